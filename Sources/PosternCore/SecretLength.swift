/// The shortest secret and admin token Postern accepts. A secret is what the proofs rest on and
/// an admin token guards every mediator's LAN: a short one falls to a guess long before anything
/// else does. 16 bytes of random text (`head -c 24 /dev/urandom | base64`) is far past any guess.
public enum SecretLength {
    public static let minimum = 16

    /// Why `secret`, found in `source` (a file's path, or an environment variable), is too short to
    /// use, or nil when it is long enough. `what` names it for the reader ("the secret", "the secret
    /// for 'acme'"). Only the length is shown, never a byte of the secret.
    public static func refusal(_ secret: [UInt8], what: String = "the secret", in source: String) -> String? {
        guard secret.count < minimum else { return nil }
        return
            "\(what) in \(source) is \(secret.count) bytes; at least \(minimum) are needed (make one with: head -c 24 /dev/urandom | base64)"
    }

    /// The same for the admin API's bearer token, which is text typed into a header: counted in characters.
    public static func tokenRefusal(_ token: String, in source: String) -> String? {
        guard token.count < minimum else { return nil }
        return
            "the admin token in \(source) is \(token.count) characters; at least \(minimum) are needed (make one with: head -c 24 /dev/urandom | base64)"
    }
}
