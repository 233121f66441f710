import NIOCore
import PosternTunnel
import PosternWire
import XCTest

/// `SocketAddress.endpoint` reads the sockaddr's bytes instead of formatting and parsing its text:
/// it must give what the text gives, for both families, byte order and the edges of the port.
final class SocketAddressEndpointTests: XCTestCase {
    func testEndpointIsWhatTheAddressTextSays() throws {
        let cases: [(String, Int)] = [
            ("192.0.2.1", 80), ("0.0.0.0", 0), ("255.255.255.255", 65535), ("10.1.2.3", 1), ("127.0.0.1", 8080),
            ("::", 0), ("::1", 443), ("fe80::1", 1), ("2001:db8::a:b:c", 65535), ("::ffff:10.0.0.1", 9000),
            ("fd00:77::10", 256),
        ]
        for (text, port) in cases {
            let address = try SocketAddress(ipAddress: text, port: port)
            XCTAssertEqual(address.endpoint, Endpoint(IPAddress(text)!, UInt16(port)), "\(text) port \(port)")
            XCTAssertEqual(address.endpoint?.host, .ip(IPAddress(address.ipAddress!)!), text)
        }
    }

    func testAUnixSocketHasNoEndpoint() throws {
        XCTAssertNil(try SocketAddress(unixDomainSocketPath: "/tmp/postern-test.sock").endpoint)
    }
}
