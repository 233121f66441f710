import Foundation
import Logging
import PosternCore

#if canImport(Glibc)
    import Glibc
#endif

/// Secrets come from files or the environment, never from argv (`ps` would show them).
enum SecretSource {
    struct Failure: Error, CustomStringConvertible {
        var description: String
    }

    /// Reads a secret file; refuses one that others may write and warns about one they may read.
    static func read(_ path: String, logger: Logger) throws -> String {
        var st = stat()
        guard stat(path, &st) == 0 else {
            throw Failure(description: "cannot read secret file \(path): \(String(cString: strerror(errno)))")
        }
        // Checked first: a directory's mode says nothing about a secret.
        guard st.st_mode & S_IFMT == S_IFREG else {
            let what = st.st_mode & S_IFMT == S_IFDIR ? "a directory" : "not a regular file"
            throw Failure(description: "cannot read secret file \(path): it is \(what)")
        }
        // Group-writable is as bad as world-writable: whoever may write it chooses the secret.
        if st.st_mode & 0o022 != 0 {
            let who = st.st_mode & 0o002 != 0 ? "everyone" : "its group"
            throw Failure(description: "secret file \(path) is writable by \(who); fix with: chmod 600 \(path)")
        }
        if st.st_mode & 0o044 != 0 {
            logger.warning("secret file \(path) is readable by other users; consider: chmod 600 \(path)")
        }
        // open(2), not FileManager, so a refusal says why (e.g. Permission denied for another user).
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else {
            throw Failure(description: "cannot read secret file \(path): \(String(cString: strerror(errno)))")
        }
        let handle = FileHandle(fileDescriptor: fd, closeOnDealloc: true)
        let data: Data
        do {
            data = try handle.readToEnd() ?? Data()
        } catch {
            throw Failure(description: "cannot read secret file \(path): \(error.localizedDescription)")
        }
        guard let text = String(data: data, encoding: .utf8) else {
            throw Failure(description: "secret file \(path) is not UTF-8 text")
        }
        return text
    }

    /// `--secret-file` if given, else $POSTERN_SECRET_FILE, else $POSTERN_SECRET; with where it
    /// came from (a path or the variable's name), for messages about it.
    static func resolve(file: String?, logger: Logger) throws -> (text: String, source: String) {
        if let file { return (try read(file, logger: logger), file) }
        let env = ProcessInfo.processInfo.environment
        if let file = env["POSTERN_SECRET_FILE"] { return (try read(file, logger: logger), file) }
        if let secret = env["POSTERN_SECRET"], !secret.isEmpty { return (secret, "$POSTERN_SECRET") }
        throw Failure(description: "no secret: give --secret-file FILE (or set POSTERN_SECRET_FILE or POSTERN_SECRET)")
    }

    /// One secret for the mediator: the first non-empty, non-comment line, trimmed; refused when it
    /// is shorter than `SecretLength.minimum`.
    static func single(_ text: String, source: String) throws -> [UInt8] {
        let secret = try firstLine(text, source: source)
        if let refusal = SecretLength.refusal(secret, in: source) { throw Failure(description: refusal) }
        return secret
    }

    /// The first non-empty, non-comment line, trimmed.
    static func firstLine(_ text: String, source: String) throws -> [UInt8] {
        let line = text.split(whereSeparator: \.isNewline)
            .map { $0.trimmingCharacters(in: .whitespaces) }
            .first { !$0.isEmpty && !$0.hasPrefix("#") }
        guard let line else { throw Failure(description: "\(source) holds no secret") }
        return Array(line.utf8)
    }
}
