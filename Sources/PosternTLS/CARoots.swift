import Logging
import NIOCore
import NIOSSL
import NIOTLS
import PosternCore
import PosternTunnel
import X509

/// The certificates of a CA file (PEM), at least one.
func caRoots(_ file: String, what: String) throws -> [NIOSSLCertificate] {
    let roots: [NIOSSLCertificate]
    do {
        roots = try NIOSSLCertificate.fromPEMFile(file)
    } catch {
        throw TransportError("cannot read the \(what) \(file): \(TLSErrorText.describe(error))")
    }
    guard !roots.isEmpty else { throw TransportError("the \(what) \(file) holds no certificate") }
    return roots
}
