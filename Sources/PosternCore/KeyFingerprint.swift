import Crypto

/// The identity a mediator pins: SHA-256 of the server's SubjectPublicKeyInfo (DER). It names the key,
/// not the certificate, so a renewed certificate for the same key keeps its pin. Written
/// `sha256:` + 64 lowercase hex digits; parsing also takes upper case and `:` between bytes.
public struct KeyFingerprint: Hashable, Sendable, CustomStringConvertible {
    public let bytes: [UInt8]

    public init(subjectPublicKeyInfo der: [UInt8]) {
        bytes = Array(SHA256.hash(data: der))
    }

    public init?(bytes: [UInt8]) {
        guard bytes.count == 32 else { return nil }
        self.bytes = bytes
    }

    public init?(parsing text: String) {
        var hex = Substring(text.trimmingWhitespace())
        if hex.lowercased().hasPrefix("sha256:") { hex = hex.dropFirst(7) }
        let digits = hex.filter { $0 != ":" }
        guard digits.count == 64 else { return nil }
        var out: [UInt8] = []
        out.reserveCapacity(32)
        var index = digits.startIndex
        while index < digits.endIndex {
            let next = digits.index(index, offsetBy: 2)
            guard let byte = UInt8(digits[index..<next], radix: 16) else { return nil }
            out.append(byte)
            index = next
        }
        bytes = out
    }

    public var description: String {
        "sha256:" + bytes.map { ($0 < 16 ? "0" : "") + String($0, radix: 16) }.joined()
    }
}

extension String {
    func trimmingWhitespace() -> Substring {
        var s = Substring(self)
        while let f = s.first, f.isWhitespace { s = s.dropFirst() }
        while let l = s.last, l.isWhitespace { s = s.dropLast() }
        return s
    }
}
