import Foundation
import PosternTLS

#if canImport(Glibc)
    import Glibc
#endif

/// `STATE_DIR/admin.token`: the admin API's bearer token when none is configured. The server makes
/// it on first start (32 random bytes in hex, mode 600, its own user) and reuses it afterwards, so
/// several servers sharing a state directory agree on one token; `postern ctl` run as root or as
/// the server's user reads it, and nobody else can. Delete it and restart to make a new one.
enum AdminTokenFile {
    struct Failure: Error, CustomStringConvertible {
        var description: String
    }

    static func path(in directory: String) -> String { directory + "/admin.token" }

    /// The server's side: the token in `directory`, made if there is none.
    static func loadOrCreate(directory: String) throws -> (token: [UInt8], created: Bool) {
        let path = path(in: directory)
        if let token = try readOwn(path) { return (token, false) }
        try PrivateDirectory.create(
            directory, what: "the state directory", hint: "choose one with --state-dir DIR or $POSTERN_STATE_DIR")
        var random = SystemRandomNumberGenerator()
        let text = (0..<32).map { _ in String(format: "%02x", UInt8.random(in: 0...255, using: &random)) }.joined()
        // Written in full under a temporary name, then linked into place: a reader never sees half a
        // token, and link(2) fails rather than replaces when another server got there first.
        let temporary = path + ".tmp.\(getpid()).\(UInt32.random(in: 0...UInt32.max))"
        let fd = open(temporary, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0o600)
        guard fd >= 0 else { throw Failure(description: "cannot create \(temporary): \(String(cString: strerror(errno)))") }
        defer { unlink(temporary) }
        let bytes = Array((text + "\n").utf8)
        let written = bytes.withUnsafeBytes { write(fd, $0.baseAddress, $0.count) }
        let writeError = errno
        fsync(fd)
        close(fd)
        guard written == bytes.count else {
            throw Failure(description: "cannot write \(temporary): \(String(cString: strerror(writeError)))")
        }
        guard link(temporary, path) == 0 else {
            let reason = errno
            if reason == EEXIST, let token = try readOwn(path) { return (token, false) }
            throw Failure(description: "cannot create \(path): \(String(cString: strerror(reason)))")
        }
        return (Array(text.utf8), true)
    }

    /// The server's side: an existing token file, which must be its own and private; nil if there is none.
    private static func readOwn(_ path: String) throws -> [UInt8]? {
        let fd = open(path, O_RDONLY | O_NOFOLLOW | O_CLOEXEC)
        guard fd >= 0 else {
            if errno == ENOENT { return nil }
            throw Failure(description: "cannot read the admin token \(path): \(String(cString: strerror(errno)))")
        }
        defer { close(fd) }
        var st = stat()
        guard fstat(fd, &st) == 0 else { throw Failure(description: "cannot stat \(path): \(String(cString: strerror(errno)))") }
        guard st.st_uid == geteuid() else {
            throw Failure(
                description: "the admin token \(path) belongs to uid \(st.st_uid), not to this user (uid \(geteuid())): delete it")
        }
        guard st.st_mode & 0o077 == 0 else {
            throw Failure(
                description:
                    "the admin token \(path) is accessible to other users (mode \(String(st.st_mode & 0o777, radix: 8))): delete it to make a new one"
            )
        }
        let token = try tokenText(fd, path)
        guard token.count >= 32 else {
            throw Failure(description: "the admin token \(path) is shorter than 32 characters: delete it to make a new one")
        }
        return Array(token.utf8)
    }

    /// `postern ctl`'s side: the token in `directory`, or nil if the server has written none there.
    static func read(directory: String) throws -> String? {
        let path = path(in: directory)
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else {
            if errno == ENOENT { return nil }
            throw Failure(
                description:
                    "cannot read the admin token \(path): \(String(cString: strerror(errno))) (run ctl as root or as the server's user, or give --token-file)"
            )
        }
        defer { close(fd) }
        return try tokenText(fd, path)
    }

    /// A token file's text without surrounding white space; a token file is small.
    static func tokenText(_ fd: CInt, _ path: String) throws -> String {
        var buffer = [UInt8](repeating: 0, count: 4096)
        let n = Glibc.read(fd, &buffer, buffer.count)
        guard n >= 0 else { throw Failure(description: "cannot read the admin token \(path): \(String(cString: strerror(errno)))") }
        return String(decoding: buffer[0..<n], as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)
    }
}
