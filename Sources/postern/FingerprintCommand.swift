import ArgumentParser
import Foundation
import Logging
import NIOSSL
import PosternTLS

/// `postern fingerprint`: the key fingerprint mediators pin, without starting a server. With no
/// --cert it reads (or first creates) the server's generated key in the state directory, so a
/// mediator can be set up before the server's first start.
struct FingerprintCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "fingerprint",
        abstract: "Print the server's TLS key fingerprint (sha256:HEX) for --server-fingerprint."
    )

    @Option(help: "A certificate (PEM) to fingerprint, e.g. the --tls-cert of a server.")
    var cert: String?

    @Option(help: "The server's state directory (default $POSTERN_STATE_DIR, /var/lib/postern as root).")
    var stateDir: String?

    func run() throws {
        do {
            if let cert {
                guard let leaf = try NIOSSLCertificate.fromPEMFile(cert).first else {
                    throw ValidationError("\(cert) holds no certificate")
                }
                print(try ServerIdentity.fingerprint(of: leaf))
            } else {
                let directory = StateDirectory.resolve(stateDir)
                let (identity, created) = try ServerIdentity.loadOrCreate(directory: directory, now: Date())
                if created { FileHandle.standardError.write(Data("created a TLS key and self-signed certificate in \(directory)\n".utf8)) }
                print(identity.fingerprint)
            }
        } catch let e as ValidationError {
            throw e
        } catch {
            FileHandle.standardError.write(Data("postern fingerprint: \(error)\n".utf8))
            throw ExitCode(1)
        }
    }
}
