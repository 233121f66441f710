import Foundation
import NIOConcurrencyHelpers
import PosternCore
import PosternTunnel

/// The known-servers file on disk (trust on first use). Read at start; a first-seen key is recorded
/// under an exclusive `flock` on `PATH.lock`, after re-reading the file, so two mediators sharing it
/// (or a `postern` run by hand meanwhile) keep each other's entries, and written through a temporary
/// file created exclusively without following links, then renamed over it. A known-servers path that
/// is a symbolic link is refused: whoever placed it would choose which keys are trusted.
public final class KnownServersFile: Sendable {
    public let path: String
    private let state: NIOLockedValueBox<KnownServers>

    /// Reads `path`; a missing file is an empty record. A malformed file is an error: a pin that
    /// silently stopped applying would be worse than not starting.
    public init(path: String) throws {
        self.path = path
        state = NIOLockedValueBox(try Self.load(path))
    }

    public func fingerprint(for server: String) -> KeyFingerprint? {
        state.withLockedValue { $0.fingerprint(for: server) }
    }

    /// Records a first-seen server's key and writes the file. When another process recorded a
    /// different key for the same server meanwhile, that one is kept and this is an error.
    public func record(_ fingerprint: KeyFingerprint, for server: String) throws {
        // One writer at a time in this process too; the flock below orders processes.
        try state.withLockedValue { memory in
            guard memory.fingerprint(for: server) == nil else { return }
            let directory = (path as NSString).deletingLastPathComponent
            if !directory.isEmpty {
                try PrivateDirectory.create(
                    directory, what: "the known-servers file's directory", hint: "choose it with --known-servers FILE or --state-dir DIR")
            }
            let lockPath = path + ".lock"
            let lock = open(lockPath, O_RDWR | O_CREAT | O_NOFOLLOW | O_CLOEXEC, 0o600)
            guard lock >= 0 else {
                throw TransportError("cannot open the lock file \(lockPath): \(String(cString: strerror(errno)))")
            }
            defer { close(lock) }  // also releases the lock
            while flock(lock, LOCK_EX) != 0 {
                guard errno == EINTR else {
                    throw TransportError("cannot lock \(lockPath): \(String(cString: strerror(errno)))")
                }
            }
            // What is on disk now, with what others added since we read it.
            var onDisk = try Self.load(path)
            if let other = onDisk.fingerprint(for: server) {
                memory = onDisk
                guard other == fingerprint else {
                    throw TransportError(
                        "another process recorded key \(other) for \(server) in \(path) meanwhile, not the \(fingerprint) seen here; that one is kept"
                    )
                }
                return
            }
            onDisk.record(fingerprint, for: server)
            do {
                try FilePermissions.replace(path, onDisk.rendered(), mode: 0o600)
            } catch {
                throw TransportError("cannot write the known-servers file \(path): \(error)")
            }
            memory = onDisk
        }
    }

    /// The file's entries; none when it does not exist. A link is refused; so is a file that will not parse.
    private static func load(_ path: String) throws -> KnownServers {
        do {
            try FilePermissions.refuseSymlink(path, what: "known-servers file")
        } catch {
            throw TransportError("\(error)")
        }
        let fd = open(path, O_RDONLY | O_NOFOLLOW | O_CLOEXEC)
        guard fd >= 0 else {
            if errno == ENOENT { return KnownServers() }
            throw TransportError("cannot read the known-servers file \(path): \(String(cString: strerror(errno)))")
        }
        let handle = FileHandle(fileDescriptor: fd, closeOnDealloc: true)
        let data: Data
        do {
            data = try handle.readToEnd() ?? Data()
        } catch {
            throw TransportError("cannot read the known-servers file \(path): \(error.localizedDescription)")
        }
        guard let text = String(data: data, encoding: .utf8) else {
            throw TransportError("the known-servers file \(path) is not UTF-8 text")
        }
        return try KnownServers(parsing: text, source: path)
    }
}
