import ArgumentParser
import Foundation
import Logging
import PosternCore
import PosternTLS
import PosternTunnel

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
