import ArgumentParser
import Foundation
import Logging
import PosternCore
import PosternTLS
import PosternTunnel

/// Where postern keeps what it makes for itself: the server's generated TLS key and certificate, the
/// mediator's known-servers file. `--state-dir`, else $POSTERN_STATE_DIR, else /var/lib/postern for
/// root, else $XDG_STATE_HOME/postern (~/.local/state/postern).
enum StateDirectory {
    static func resolve(_ option: String?) -> String {
        if let option { return option }
        let env = ProcessInfo.processInfo.environment
        if let dir = env["POSTERN_STATE_DIR"], !dir.isEmpty { return dir }
        if geteuid() == 0 { return "/var/lib/postern" }
        if let xdg = env["XDG_STATE_HOME"], !xdg.isEmpty { return xdg + "/postern" }
        return (env["HOME"] ?? ".") + "/.local/state/postern"
    }
}

/// The server's transport: TLS 1.3 with a given or generated key, or plain TCP with `--insecure`.
struct ServerTransportOptions {
    var insecure: Bool
    var certificateFile: String?
    var keyFile: String?
    var stateDirectory: String?
    var mediatorCAFile: String?

    func make(logger: Logger) throws -> ServerTransport {
        if insecure {
            guard certificateFile == nil, keyFile == nil, mediatorCAFile == nil else {
                throw ValidationError("--insecure turns TLS off: it cannot be combined with --tls-cert, --tls-key or --mediator-ca")
            }
            logger.warning("--insecure: the tunnel is plain TCP; relayed data crosses the network unencrypted")
            return PlainTransport()
        }
        let identity: ServerIdentity
        switch try certificatePair(certificateFile, keyFile) {
        case (let cert, let key)?:
            identity = try ServerIdentity.load(certificateFile: cert, keyFile: key)
        case nil:
            let directory = StateDirectory.resolve(stateDirectory)
            let (loaded, created) = try ServerIdentity.loadOrCreate(directory: directory, now: Date())
            if created { logger.notice("created a TLS key and self-signed certificate in \(directory)") }
            identity = loaded
        }
        return try TLSServerTransport(identity: identity, mediatorCAFile: mediatorCAFile)
    }
}

/// The mediator's transport and how it trusts the server.
struct MediatorTransportOptions {
    var insecure: Bool
    var serverFingerprint: String?
    var knownServersFile: String?
    var stateDirectory: String?
    var caFile: String?
    var certificateFile: String?
    var keyFile: String?

    func make(logger: Logger) throws -> ClientTransport {
        if insecure {
            guard serverFingerprint == nil, caFile == nil, certificateFile == nil, keyFile == nil, knownServersFile == nil else {
                throw ValidationError(
                    "--insecure turns TLS off: it cannot be combined with --server-fingerprint, --known-servers, --ca-file, --tls-cert or --tls-key"
                )
            }
            logger.warning("--insecure: the tunnel is plain TCP and the server's identity rests on the secret alone")
            return PlainTransport()
        }
        let trust: TLSClientTransport.TrustSource
        switch (serverFingerprint, caFile) {
        case (let text?, nil):
            guard knownServersFile == nil else { throw ValidationError("--server-fingerprint and --known-servers exclude each other") }
            guard let f = KeyFingerprint(parsing: text) else {
                throw ValidationError("--server-fingerprint '\(text)' is not sha256: followed by 64 hex digits")
            }
            trust = .fingerprint(f)
        case (nil, let file?):
            guard knownServersFile == nil else { throw ValidationError("--ca-file and --known-servers exclude each other") }
            trust = .certificateAuthority(file: file)
        case (nil, nil):
            let path = knownServersFile ?? StateDirectory.resolve(stateDirectory) + "/known_servers"
            trust = .knownServers(try KnownServersFile(path: path))
        default:
            throw ValidationError("--server-fingerprint and --ca-file exclude each other: pin the key, or trust a CA")
        }
        return try TLSClientTransport(trust: trust, clientCertificate: try certificatePair(certificateFile, keyFile), logger: logger)
    }
}

/// `--tls-cert` and `--tls-key`: both or neither.
private func certificatePair(_ certificate: String?, _ key: String?) throws -> (String, String)? {
    switch (certificate, key) {
    case (let c?, let k?): return (c, k)
    case (nil, nil): return nil
    default: throw ValidationError("--tls-cert and --tls-key go together")
    }
}
