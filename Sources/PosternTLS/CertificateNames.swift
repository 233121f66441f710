import Logging
import NIOCore
import NIOSSL
import NIOTLS
import PosternCore
import PosternTunnel
import X509

/// The names a certificate is for: its subject's common names and its DNS subject alternative names.
enum CertificateNames {
    static func of(_ certificate: NIOSSLCertificate) -> [String] {
        guard let der = try? certificate.toDERBytes(), let parsed = try? Certificate(derEncoded: der) else { return [] }
        var names: [String] = []
        for rdn in parsed.subject {
            for attribute in rdn where attribute.type == .RDNAttributeType.commonName {
                // RFC 4514 text ("CN=acme"); mediator names need no escaping.
                let text = "\(attribute)"
                if let eq = text.firstIndex(of: "=") { names.append(String(text[text.index(after: eq)...])) }
            }
        }
        if let alternatives = try? parsed.extensions.subjectAlternativeNames {
            for case .dnsName(let name) in alternatives { names.append(name) }
        }
        return names
    }
}
