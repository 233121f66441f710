import ArgumentParser
import Foundation
import Logging
import NIOSSL
import PosternTLS

/// `postern fingerprint`: the key fingerprint mediators pin, without starting a server. With no
/// --cert it reads the server's generated key in the state directory, and says which directory it
/// read: run as another user (or with another $POSTERN_STATE_DIR) it would otherwise look in a
/// different place. It makes a key only when asked (`--create`), so a mediator can be set up before
/// the server's first start without a typo silently making a second, unused key.
struct FingerprintCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "fingerprint",
        abstract: "Print the server's TLS key fingerprint (sha256:HEX) for --server-fingerprint."
    )

    @Option(help: "A certificate (PEM) to fingerprint, e.g. the --tls-cert of a server.")
    var cert: String?

    @Option(help: "The server's state directory (default $POSTERN_STATE_DIR, /var/lib/postern as root).")
    var stateDir: String?

    @Flag(help: "Make the key and self-signed certificate if the state directory has none yet.")
    var create = false

    func run() throws {
        do {
            if let cert {
                guard let leaf = try NIOSSLCertificate.fromPEMFile(cert).first else {
                    throw ValidationError("\(cert) holds no certificate")
                }
                print(try ServerIdentity.fingerprint(of: leaf))
            } else {
                let directory = StateDirectory.resolve(stateDir)
                guard create || FileManager.default.fileExists(atPath: directory + "/server.key") else {
                    FileHandle.standardError.write(
                        Data(
                            ("postern fingerprint: no server key in \(directory) (the server makes one on its first start). "
                                + "Give the server's --state-dir, or --create to make the key now.\n").utf8))
                    throw ExitCode(1)
                }
                let (identity, created) = try ServerIdentity.loadOrCreate(directory: directory, now: Date())
                let what = created ? "created a TLS key and self-signed certificate in" : "the server key in"
                FileHandle.standardError.write(Data("\(what) \(directory)\n".utf8))
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
