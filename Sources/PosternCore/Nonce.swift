/// 32 bytes from the system's cryptographic generator, for the handshake nonces (§4.2).
public enum Nonce {
    public static func make() -> [UInt8] {
        var g = SystemRandomNumberGenerator()
        return (0..<32).map { _ in UInt8.random(in: .min ... .max, using: &g) }
    }
}
