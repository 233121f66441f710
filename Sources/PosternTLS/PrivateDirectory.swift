import Foundation

#if canImport(Glibc)
    import Glibc
#endif

/// Makes the directories postern keeps its own files in (the state directory, the known-servers
/// file's), with their missing parents, mode 700. mkdir(2) one level at a time rather than
/// FileManager, whose refusal is an NSError dump: an unprivileged server without a writable home
/// said `Error Domain=NSCocoaErrorDomain Code=513 "You don’t have permission." UserInfo={…}`.
public enum PrivateDirectory {
    public struct Failure: Error, CustomStringConvertible {
        public var description: String
    }

    /// `path` and its missing parents; `what` names it in the refusal ("the state directory"), `hint`
    /// says how to choose another.
    public static func create(_ path: String, what: String, hint: String) throws {
        var prefix = path.hasPrefix("/") ? "" : "."
        for component in path.split(separator: "/", omittingEmptySubsequences: true) {
            prefix += "/" + component
            if mkdir(prefix, 0o700) == 0 || errno == EEXIST { continue }
            let reason = String(cString: strerror(errno))
            throw Failure(description: "cannot create \(what) \(path): \(prefix == path ? "" : "\(prefix): ")\(reason); \(hint)")
        }
        var st = stat()
        guard stat(path, &st) == 0, st.st_mode & S_IFMT == S_IFDIR else {
            throw Failure(description: "cannot create \(what) \(path): it exists and is not a directory; \(hint)")
        }
    }
}
