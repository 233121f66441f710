import ArgumentParser
import Foundation
import Logging
import PosternCore
import PosternTLS
import PosternTunnel

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
