import Foundation

/// Files holding keys: refused when others may read or write them, created without a window in which
/// they could.
enum FilePermissions {
    struct Failure: Error, CustomStringConvertible {
        var description: String
    }

    static func checkPrivate(_ path: String, what: String) throws {
        var st = stat()
        guard stat(path, &st) == 0 else {
            throw Failure(description: "cannot read the \(what) \(path): \(String(cString: strerror(errno)))")
        }
        if st.st_mode & 0o007 != 0 || st.st_mode & 0o020 != 0 {
            throw Failure(
                description: "the \(what) \(path) is accessible to other users (mode \(String(st.st_mode & 0o777, radix: 8))): chmod 600 it"
            )
        }
    }

    /// Writes a file that must not exist yet, with `mode` from the first byte on.
    static func writeNew(_ path: String, _ text: String, mode: mode_t) throws {
        let fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, mode)
        guard fd >= 0 else { throw Failure(description: "cannot create \(path): \(String(cString: strerror(errno)))") }
        defer { close(fd) }
        try writeAll(fd, path, text)
    }

    /// Replaces a file's contents atomically: a temporary file in the same directory, created
    /// exclusively (O_EXCL) without following a link (O_NOFOLLOW) and with `mode` from the first
    /// byte on, is written, fsynced and renamed over `path`. A name planted in advance (a link
    /// pointing elsewhere) makes the creation fail instead of writing through it. The caller creates
    /// the directory.
    static func replace(_ path: String, _ text: String, mode: mode_t) throws {
        var temporary = ""
        var fd: Int32 = -1
        for _ in 0..<8 {
            temporary = path + ".tmp.\(getpid()).\(UInt32.random(in: 0...UInt32.max))"
            fd = open(temporary, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, mode)
            if fd >= 0 || errno != EEXIST { break }
        }
        guard fd >= 0 else { throw Failure(description: "cannot create \(temporary): \(String(cString: strerror(errno)))") }
        do {
            try writeAll(fd, temporary, text)
            guard fsync(fd) == 0 else { throw Failure(description: "cannot write \(temporary): \(String(cString: strerror(errno)))") }
            close(fd)
        } catch {
            close(fd)
            unlink(temporary)
            throw error
        }
        guard rename(temporary, path) == 0 else {
            let reason = String(cString: strerror(errno))
            unlink(temporary)
            throw Failure(description: "cannot replace \(path): \(reason)")
        }
    }

    /// Refuses `path` when it is a symbolic link: whoever placed it would choose where a key file is
    /// read from or written to. A missing file is fine.
    static func refuseSymlink(_ path: String, what: String) throws {
        var st = stat()
        guard lstat(path, &st) == 0 else { return }
        if st.st_mode & S_IFMT == S_IFLNK {
            throw Failure(description: "the \(what) \(path) is a symbolic link; give the real path")
        }
    }

    private static func writeAll(_ fd: Int32, _ path: String, _ text: String) throws {
        var bytes = Array(text.utf8)[...]
        while !bytes.isEmpty {
            let n = bytes.withUnsafeBytes { write(fd, $0.baseAddress, $0.count) }
            if n < 0 && errno == EINTR { continue }
            guard n > 0 else { throw Failure(description: "cannot write \(path): \(String(cString: strerror(errno)))") }
            bytes = bytes.dropFirst(n)
        }
    }
}
