import Foundation
import NIOCore
import NIOPosix
import PosternPacket
import PosternTUN
import PosternWire
import XCTest

@testable import PosternNetlink

#if canImport(Glibc)
    import Glibc
#endif

/// A real tun device in a throwaway namespace (root only, skipped otherwise): what the kernel routes
/// into it comes out of `TunDevice` as whole IPv4 packets, and a packet written to it reaches a socket.
final class TunDeviceNamespaceTests: XCTestCase {
    typealias Prefix = MediatorEnvironment.AddressPrefix

    final class Collected: @unchecked Sendable {
        private let lock = NSLock()
        private var packets: [ByteBuffer] = []
        func add(_ batch: [ByteBuffer]) { lock.withLock { packets += batch } }
        var all: [ByteBuffer] { lock.withLock { packets } }
    }

    func testPacketsBothWays() throws {
        let namespace = try NetworkNamespaceFixture.make(suffix: "tun")
        defer { namespace.delete() }
        let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
        defer { try? group.syncShutdownGracefully() }
        let loop = group.next()
        let collected = Collected()
        let stateFile = FileManager.default.temporaryDirectory.appendingPathComponent("pst-tun-\(getpid()).journal").path

        let (udpFromDevice, received) = try namespace.run { () -> (IPPacket?, String) in
            // TUNSETIFF makes the device in the calling thread's namespace: this one.
            let device = try TunDevice.open(name: "pst-t0", mtu: 1400, eventLoop: loop).wait()
            defer { try? loop.submit { device.closeNow() }.wait() }
            try loop.submit { device.setReceiver { collected.add($0) } }.wait()
            let c = NetworkConfigurator(stateFile: stateFile)
            defer { c.undoAll() }
            try c.setLinkUp(name: "pst-t0", mtu: 1400)
            try c.addAddress(interface: "pst-t0", prefix: Prefix(parsing: "10.8.0.1/32")!)
            try c.addRoute(interface: "pst-t0", destination: Prefix(parsing: "10.8.1.0/24")!)

            // Into the device: a datagram to 10.8.1.5:9, routed there by the kernel.
            let out = socket(AF_INET, Int32(SOCK_DGRAM.rawValue), 0)
            defer { close(out) }
            var to = sockaddr_in()
            to.sin_family = sa_family_t(AF_INET)
            to.sin_port = UInt16(9).bigEndian
            to.sin_addr.s_addr = UInt32(0x0a08_0105).bigEndian
            let message = Array("through the tun".utf8)
            _ = withUnsafePointer(to: &to) {
                $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                    sendto(out, message, message.count, 0, $0, socklen_t(MemoryLayout<sockaddr_in>.size))
                }
            }
            var udp: IPPacket?
            for _ in 0..<50 where udp == nil {
                udp = collected.all.compactMap { try? IPPacket(parsing: $0) }.first {
                    $0.version == .v4 && $0.transportProtocol == 17 && $0.destination == IPAddress("10.8.1.5")!
                }
                if udp == nil { usleep(20_000) }
            }

            // Out of the device: 10.8.1.5:7777 → 10.8.0.1:5555, to a socket bound there.
            let inbound = socket(AF_INET, Int32(SOCK_DGRAM.rawValue), 0)
            defer { close(inbound) }
            var at = sockaddr_in()
            at.sin_family = sa_family_t(AF_INET)
            at.sin_port = UInt16(5555).bigEndian
            at.sin_addr.s_addr = UInt32(0x0a08_0001).bigEndian
            _ = withUnsafePointer(to: &at) {
                $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(inbound, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
            }
            var timeout = timeval(tv_sec: 2, tv_usec: 0)
            setsockopt(inbound, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
            let payload = Array("back out".utf8)
            var packet = ByteBuffer()
            let total = 20 + 8 + payload.count
            packet.writeBytes([0x45, 0, UInt8(total >> 8), UInt8(total & 0xff), 0, 1, 0x40, 0, 64, 17, 0, 0, 10, 8, 1, 5, 10, 8, 0, 1])
            packet.writeInteger(UInt16(7777))
            packet.writeInteger(UInt16(5555))
            packet.writeInteger(UInt16(8 + payload.count))
            packet.writeInteger(UInt16(0))  // no UDP checksum (allowed over IPv4)
            packet.writeBytes(payload)
            packet.setInteger(InternetChecksum.compute(packet, at: 0, length: 20), at: 10)
            let finished = packet
            let written = try loop.submit { device.writePacket(finished) }.wait()
            XCTAssertTrue(written)
            var buffer = [UInt8](repeating: 0, count: 100)
            let n = recv(inbound, &buffer, buffer.count, 0)
            return (udp, n > 0 ? String(decoding: buffer.prefix(n), as: UTF8.self) : "nothing (errno \(errno))")
        }
        let packet = try XCTUnwrap(udpFromDevice, "no UDP packet to 10.8.1.5 came out of the device")
        XCTAssertEqual(packet.source, IPAddress("10.8.0.1")!, "the kernel chose the device's address as the source")
        XCTAssertEqual(packet.totalLength, 20 + 8 + 15)
        XCTAssertEqual(received, "back out")
        XCTAssertFalse(FileManager.default.fileExists(atPath: stateFile))
    }
}
