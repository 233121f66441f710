import PosternCore
import PosternWire
import XCTest

/// Two mediators in TUN mode cannot route the same addresses on the server: the second is refused
/// with a message that names the clash; releasing frees the prefixes.
final class TunPrefixClaimsTests: XCTestCase {
    typealias Prefix = MediatorEnvironment.AddressPrefix
    func p(_ s: String) -> Prefix { Prefix(parsing: s)! }

    func testOverlappingPrefixesAreRefused() {
        var claims = TunPrefixClaims()
        XCTAssertNil(claims.claim("acme", remoteAddress: IPAddress("192.168.77.50")!, prefixes: [p("192.168.77.0/24")]))
        let refusal = claims.claim("beta", remoteAddress: IPAddress("10.0.0.50")!, prefixes: [p("10.0.0.0/24"), p("192.168.77.128/25")])
        XCTAssertEqual(refusal, "192.168.77.128/25 overlaps 192.168.77.0/24 of mediator 'acme', which is in TUN mode already")
        XCTAssertNil(claims.prefixes(of: "beta"))
        // The remote address alone clashes too (it becomes a /32 on the server).
        XCTAssertNotNil(claims.claim("gamma", remoteAddress: IPAddress("192.168.77.60")!, prefixes: [p("172.16.0.0/16")]))
        XCTAssertNil(claims.claim("beta", remoteAddress: IPAddress("10.0.0.50")!, prefixes: [p("10.0.0.0/24")]))
        claims.release("acme")
        XCTAssertNil(claims.claim("gamma", remoteAddress: IPAddress("192.168.77.60")!, prefixes: [p("192.168.77.0/24")]))
    }

    func testAMediatorMayClaimAgain() {
        var claims = TunPrefixClaims()
        XCTAssertNil(claims.claim("acme", remoteAddress: IPAddress("192.168.77.50")!, prefixes: [p("192.168.77.0/24")]))
        XCTAssertNil(claims.claim("acme", remoteAddress: IPAddress("192.168.77.50")!, prefixes: [p("192.168.77.7/24")]))
        XCTAssertEqual(claims.prefixes(of: "acme"), [p("192.168.77.0/24"), p("192.168.77.50/32")])
    }
}
