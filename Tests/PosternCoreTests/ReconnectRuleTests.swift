import PosternCore
import PosternWire
import XCTest

/// Nothing unauthenticated stops the mediator; only a server that proved the secret may (docs/security.md).
final class ReconnectRuleTests: XCTestCase {
    private func end(_ code: ErrorCode, byPeer: Bool = true) -> SessionEnd {
        SessionEnd(code: code, message: "m", byPeer: byPeer)
    }

    func testNothingBeforeTheServersProofStopsTheMediator() {
        // REFUSED in the handshake (forgeable), a TLS alert or a pin mismatch (transport: not by peer).
        for code: ErrorCode in [.authenticationFailed, .unknownMediator, .versionMismatch, .protocolError, .addressInUse] {
            for byPeer in [true, false] {
                XCTAssertEqual(
                    ReconnectRule.decide(end(code, byPeer: byPeer), serverProved: false), .retry(resetBackoff: false, loud: true),
                    "\(code) byPeer \(byPeer)")
            }
        }
    }

    func testNetworkTroubleBeforeTheProofIsRetriedAsAWarning() {
        for code: ErrorCode in [.connectionReset, .timedOut, .keepaliveTimeout, .shuttingDown] {
            XCTAssertEqual(ReconnectRule.decide(end(code, byPeer: false), serverProved: false), .retry(resetBackoff: false, loud: false))
        }
    }

    func testAProvedServerRefusingThisMediatorStopsIt() {
        for code: ErrorCode in [.authenticationFailed, .unknownMediator, .versionMismatch] {
            XCTAssertEqual(ReconnectRule.decide(end(code), serverProved: true), .stop, "\(code)")
            // Said by this end (not the server), it is no refusal: retry.
            XCTAssertNotEqual(ReconnectRule.decide(end(code, byPeer: false), serverProved: true), .stop, "\(code)")
        }
    }

    func testNameInUseAndServerFullRetryWithoutResettingTheBackoff() {
        XCTAssertEqual(ReconnectRule.decide(end(.addressInUse), serverProved: true), .retry(resetBackoff: false, loud: true))
        XCTAssertEqual(ReconnectRule.decide(end(.limitExceeded), serverProved: true), .retry(resetBackoff: false, loud: true))
    }

    func testAWorkingSessionThatEndsResetsTheBackoff() {
        XCTAssertEqual(
            ReconnectRule.decide(end(.keepaliveTimeout, byPeer: false), serverProved: true), .retry(resetBackoff: true, loud: false))
        XCTAssertEqual(ReconnectRule.decide(end(.shuttingDown), serverProved: true), .retry(resetBackoff: true, loud: false))
        XCTAssertEqual(ReconnectRule.decide(end(.replaced), serverProved: true), .retry(resetBackoff: true, loud: true))
    }
}
