import Crypto

/// The admin API's bearer token. Only its SHA-256 digest is kept, and a presented token is hashed
/// the same way before the comparison: both sides are then 32 bytes, so the time taken says
/// nothing about the token's length or about how many leading bytes a guess got right.
public struct AdminToken: Sendable {
    private let digest: [UInt8]

    public init(_ bytes: some Collection<UInt8>) {
        digest = Array(SHA256.hash(data: Array(bytes)))
    }

    public func matches(_ presented: some Collection<UInt8>) -> Bool {
        let other = Array(SHA256.hash(data: Array(presented)))
        var difference: UInt8 = 0
        for i in 0..<digest.count { difference |= digest[i] ^ other[i] }
        return difference == 0
    }

    /// The token of an `Authorization: Bearer TOKEN` header value (the scheme is case-insensitive,
    /// RFC 9110 §11.1), or nil for any other kind of credential.
    public static func bearer(_ header: String) -> Substring? {
        let scheme = "bearer "
        guard header.count > scheme.count, header.prefix(scheme.count).lowercased() == scheme else { return nil }
        return header.dropFirst(scheme.count).drop { $0 == " " }
    }
}
