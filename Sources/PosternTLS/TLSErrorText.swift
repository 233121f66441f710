import NIOSSL

/// Sentences for TLS failures, with the likely cause.
enum TLSErrorText {
    static func isTLSError(_ error: Error) -> Bool {
        error is NIOSSLError || error is BoringSSLError || error is NIOSSLExtraError
    }

    static func describe(_ error: Error, client: Bool = true) -> String { classify(error, client: client).text }

    /// The sentence, and whether it is about trust (a certificate refused by either end): logged as an
    /// error, yet retried, since a TLS alert is not authenticated and may come from anyone on the path.
    static func classify(_ error: Error, client: Bool = true) -> (text: String, trust: Bool) {
        let text = "\(error)"
        let upper = text.uppercased()
        if upper.contains("WRONG_VERSION_NUMBER") || upper.contains("HTTP_REQUEST") || upper.contains("PACKET_LENGTH_TOO_LONG")
            || upper.contains("RECORD_LENGTH_MISMATCH")
        {
            return ("TLS handshake failed: the peer does not speak TLS (is one end running with --insecure?)", false)
        }
        if upper.contains("UNSUPPORTED_PROTOCOL") || upper.contains("PROTOCOL_VERSION") {
            return ("TLS handshake failed: the peer does not offer TLS 1.3", false)
        }
        if upper.contains("PEER_DID_NOT_RETURN_A_CERTIFICATE") || upper.contains("CERTIFICATE_REQUIRED") {
            return client
                ? ("TLS handshake failed: the server requires a mediator certificate (--tls-cert and --tls-key)", true)
                : ("TLS handshake failed: the mediator presented no certificate, and --mediator-ca requires one", true)
        }
        if upper.contains("FAILEDTOVALIDATEHOSTNAME") {
            return ("TLS handshake failed: the server's certificate does not name the host dialled (\(text))", true)
        }
        if upper.contains("CERTIFICATE_VERIFY_FAILED") {
            return client
                ? ("TLS handshake failed: the server's certificate does not chain to the trusted CA (--ca-file)", true)
                : ("TLS handshake failed: the mediator's certificate does not chain to --mediator-ca", true)
        }
        if upper.contains("TLSV1_ALERT_UNKNOWN_CA") || upper.contains("SSLV3_ALERT_BAD_CERTIFICATE")
            || upper.contains("CERTIFICATE_UNKNOWN")
        {
            return client
                ? (
                    "TLS handshake failed: the server refused this mediator's certificate (check --tls-cert against its --mediator-ca)",
                    true
                )
                // Not a trust failure of the mediator's: it proved nothing false, it pins another key (a
                // rotated server key, a typo). Counted as a failed proof, a mediator behind the same NAT
                // as a misconfigured one was locked out with it (README: wrong secrets and names count).
                : ("TLS handshake failed: the mediator refused this server's certificate", false)
        }
        if upper.contains("EOF DURING HANDSHAKE") {
            return ("the peer closed the connection during the TLS handshake", false)
        }
        if upper.contains("UNCLEANSHUTDOWN") {
            return ("the peer closed the tunnel without a TLS close_notify", false)
        }
        return ("TLS error: \(text)", false)
    }
}
