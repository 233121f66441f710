import Foundation
import NIOConcurrencyHelpers
import PosternCore
import PosternTunnel

/// The known-servers file on disk (trust on first use). Read once at start; a first-seen key is added
/// in memory and written back atomically.
public final class KnownServersFile: Sendable {
    public let path: String
    private let state: NIOLockedValueBox<KnownServers>

    /// Reads `path`; a missing file is an empty record. A malformed file is an error: a pin that
    /// silently stopped applying would be worse than not starting.
    public init(path: String) throws {
        self.path = path
        if FileManager.default.fileExists(atPath: path) {
            let text: String
            do {
                text = try String(contentsOfFile: path, encoding: .utf8)
            } catch {
                throw TransportError("cannot read the known-servers file \(path): \(error.localizedDescription)")
            }
            state = NIOLockedValueBox(try KnownServers(parsing: text, source: path))
        } else {
            state = NIOLockedValueBox(KnownServers())
        }
    }

    public func fingerprint(for server: String) -> KeyFingerprint? {
        state.withLockedValue { $0.fingerprint(for: server) }
    }

    /// Records a first-seen server's key and writes the file.
    public func record(_ fingerprint: KeyFingerprint, for server: String) throws {
        let text = state.withLockedValue { record -> String? in
            guard record.fingerprint(for: server) == nil else { return nil }
            record.record(fingerprint, for: server)
            return record.rendered()
        }
        if let text { try FilePermissions.replace(path, text, mode: 0o600) }
    }
}
