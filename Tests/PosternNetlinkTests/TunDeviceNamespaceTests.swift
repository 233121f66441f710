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

    struct TimedOut: Error {
        var what: String
    }

    /// An IPv4 TCP segment 10.8.1.5:80 → 10.8.0.1:`port` with a correct checksum.
    static func segment(port: UInt16, seq: UInt32, ack: UInt32, flags: UInt8, options: [UInt8] = [], payload: [UInt8] = [], id: UInt16)
        -> ByteBuffer
    {
        var p = ByteBuffer()
        let total = 40 + options.count + payload.count
        p.writeBytes([0x45, 0, UInt8(total >> 8), UInt8(total & 0xff)])
        p.writeInteger(id)
        p.writeBytes([0x40, 0, 64, 6, 0, 0, 10, 8, 1, 5, 10, 8, 0, 1])
        p.writeInteger(UInt16(80))
        p.writeInteger(port)
        p.writeInteger(seq)
        p.writeInteger(ack)
        p.writeBytes([UInt8((20 + options.count) / 4) << 4, flags])
        p.writeInteger(UInt16(65_000))
        p.writeBytes([0, 0, 0, 0] + options + payload)
        p.setInteger(InternetChecksum.compute(p, at: 0, length: 20), at: 10)
        var pseudo = ByteBuffer(bytes: [10, 8, 1, 5, 10, 8, 0, 1, 0, 6])
        pseudo.writeInteger(UInt16(total - 20))
        pseudo.writeImmutableBuffer(p.getSlice(at: 20, length: total - 20)!)
        p.setInteger(InternetChecksum.compute(pseudo, at: 0, length: pseudo.readableBytes), at: 36)
        return p
    }

    /// With offloads, through the real kernel: a TCP connection's 60 KB leave the device as segments
    /// no larger than the MSS it was given, with correct checksums and no byte missing (the kernel
    /// handed over super-packets: `superPacketsRead`), and a run of segments written back is merged
    /// into GSO writes (`coalescedWrites`) that the kernel takes and delivers to the socket in order.
    func testOffloadsBothWays() throws {
        let namespace = try NetworkNamespaceFixture.make(suffix: "tso")
        defer { namespace.delete() }
        let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
        defer { try? group.syncShutdownGracefully() }
        let loop = group.next()
        let collected = Collected()
        let stateFile = FileManager.default.temporaryDirectory.appendingPathComponent("pst-tso-\(getpid()).journal").path

        try namespace.run {
            let device = try TunDevice.open(name: "pst-t1", mtu: 1400, eventLoop: loop).wait()
            defer { try? loop.submit { device.closeNow() }.wait() }
            guard device.offloads.contains(.tso4) else {
                throw XCTSkip("the kernel granted no TSO (offloads: \(device.offloads))")
            }
            try loop.submit { device.setReceiver { collected.add($0) } }.wait()
            let c = NetworkConfigurator(stateFile: stateFile)
            defer { c.undoAll() }
            try c.setLinkUp(name: "pst-t1", mtu: 1400)
            try c.addAddress(interface: "pst-t1", prefix: Prefix(parsing: "10.8.0.1/32")!)
            try c.addRoute(interface: "pst-t1", destination: Prefix(parsing: "10.8.1.0/24")!)

            func tcpPackets() -> [ByteBuffer] {
                collected.all.filter { (try? IPPacket(parsing: $0))?.transportProtocol == 6 }
            }
            func waitFor(_ what: String, _ condition: () -> Bool) throws {
                for _ in 0..<250 where !condition() { usleep(20_000) }
                guard condition() else { throw TimedOut(what: what) }
            }

            // A non-blocking connect: the kernel's SYN comes out of the device; we answer for 10.8.1.5.
            let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_NONBLOCK.rawValue), 0)
            defer { close(fd) }
            var to = sockaddr_in()
            to.sin_family = sa_family_t(AF_INET)
            to.sin_port = UInt16(80).bigEndian
            to.sin_addr.s_addr = UInt32(0x0a08_0105).bigEndian
            _ = withUnsafePointer(to: &to) {
                $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
            }
            try waitFor("the SYN") { !tcpPackets().isEmpty }
            // Packets from the device start after its virtio-net header: rebase them at 0.
            let syn = ByteBuffer(bytes: tcpPackets()[0].readableBytesView)
            let port = syn.getInteger(at: 20, as: UInt16.self)!
            let theirSeq = syn.getInteger(at: 24, as: UInt32.self)! &+ 1
            var ourSeq: UInt32 = 5_000_000
            let synAck = Self.segment(
                port: port, seq: ourSeq, ack: theirSeq, flags: 0x12, options: [2, 4, 0x05, 0x50], id: 1)  // MSS 1360
            ourSeq &+= 1
            XCTAssertTrue(try loop.submit { device.writePacket(synAck) }.wait())
            var poll = pollfd(fd: fd, events: Int16(POLLOUT), revents: 0)
            XCTAssertEqual(Glibc.poll(&poll, 1, 5000), 1, "the connection did not complete")

            // Kernel → device: 60 KB in one send; TSO hands them over in super-packets.
            let data = (0..<60_000).map { UInt8(truncatingIfNeeded: $0 &* 13) }
            func dataSegments() -> [ByteBuffer] {
                tcpPackets().filter { $0.readableBytes > 40 }.map { ByteBuffer(bytes: $0.readableBytesView) }
            }
            var got: [UInt32: [UInt8]] = [:]
            var joined: [UInt8] = []
            var acked = 0
            var sent = 0
            for _ in 0..<500 where joined.count < data.count {
                // Non-blocking: what the send buffer takes now; the rest as ACKs free it.
                if sent < data.count {
                    let n = data[sent...].withUnsafeBytes { send(fd, $0.baseAddress, $0.count, 0) }
                    if n > 0 { sent += n }
                }
                for s in dataSegments() {
                    got[s.getInteger(at: 24, as: UInt32.self)! &- theirSeq] = s.getBytes(at: 40, length: s.readableBytes - 40)!
                }
                while let next = got[UInt32(joined.count)] { joined += next }
                if joined.count > acked {
                    // ACK what came, so the sender's window opens for the rest.
                    acked = joined.count
                    let ack = Self.segment(port: port, seq: ourSeq, ack: theirSeq &+ UInt32(acked), flags: 0x10, id: 1)
                    _ = try loop.submit { device.writePacket(ack) }.wait()
                } else {
                    usleep(10_000)
                }
            }
            XCTAssertEqual(joined, data)
            for s in dataSegments() {
                XCTAssertLessThanOrEqual(s.readableBytes, 1400)
                XCTAssertEqual(InternetChecksum.compute(s, at: 0, length: 20), 0, "IPv4 header checksum")
                var pseudo = ByteBuffer(bytes: [10, 8, 0, 1, 10, 8, 1, 5, 0, 6])
                pseudo.writeInteger(UInt16(s.readableBytes - 20))
                pseudo.writeImmutableBuffer(s.getSlice(at: 20, length: s.readableBytes - 20)!)
                XCTAssertEqual(InternetChecksum.compute(pseudo, at: 0, length: pseudo.readableBytes), 0, "TCP checksum")
            }
            XCTAssertGreaterThan(try loop.submit { device.superPacketsRead }.wait(), 0)

            // Device → kernel: 30 segments of 1,000 bytes, written as one batch: merged, then cut
            // again by the kernel and delivered in order.
            let reply = (0..<30_000).map { UInt8(truncatingIfNeeded: $0 &* 7 &+ 1) }
            var run: [ByteBuffer] = []
            for i in 0..<30 {
                run.append(
                    Self.segment(
                        port: port, seq: ourSeq &+ UInt32(i * 1000), ack: theirSeq &+ 60_000, flags: 0x10,
                        payload: Array(reply[(i * 1000)..<((i + 1) * 1000)]), id: UInt16(2 + i)))
            }
            let batch = run
            XCTAssertEqual(try loop.submit { device.writePackets(batch) }.wait(), 30)
            XCTAssertGreaterThan(try loop.submit { device.coalescedWrites }.wait(), 0)
            var received: [UInt8] = []
            var buffer = [UInt8](repeating: 0, count: 65_536)
            for _ in 0..<250 where received.count < reply.count {
                let n = recv(fd, &buffer, buffer.count, 0)
                if n > 0 { received += buffer.prefix(n) } else { usleep(20_000) }
            }
            XCTAssertEqual(received, reply)
        }
        XCTAssertFalse(FileManager.default.fileExists(atPath: stateFile))
    }
}
