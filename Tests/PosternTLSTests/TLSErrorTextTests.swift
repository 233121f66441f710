import XCTest

@testable import PosternTLS

/// What a TLS failure is called, and whether it counts as a trust failure (on the server: a failed
/// proof, throttled per source address).
final class TLSErrorTextTests: XCTestCase {
    private struct Alert: Error, CustomStringConvertible {
        var description: String
    }

    func testAMediatorRefusingTheServersKeyIsNotAFailedProofOnTheServer() {
        // The mediator pins another key: it proved nothing false. As a trust failure it was counted
        // against its address, and 5 of them closed that address (a NAT other mediators share).
        let refused = TLSErrorText.classify(Alert(description: "handshakeFailed(SSLV3_ALERT_BAD_CERTIFICATE)"), client: false)
        XCTAssertEqual(refused.text, "TLS handshake failed: the mediator refused this server's certificate")
        XCTAssertFalse(refused.trust)
    }

    func testCertificatesRefusedByTheVerifyingEndAreTrustFailures() {
        // The server's own verdict on a mediator certificate is a failed proof; the mediator's verdict
        // on the server's is logged as an error there (and retried).
        XCTAssertTrue(TLSErrorText.classify(Alert(description: "CERTIFICATE_VERIFY_FAILED"), client: false).trust)
        XCTAssertTrue(TLSErrorText.classify(Alert(description: "CERTIFICATE_VERIFY_FAILED"), client: true).trust)
        XCTAssertTrue(TLSErrorText.classify(Alert(description: "SSLV3_ALERT_BAD_CERTIFICATE"), client: true).trust)
    }
}
