import Foundation
import PosternCapture
import PosternPcap
import XCTest

#if canImport(Glibc)
    import Glibc
#endif

/// Builds the frames the tests feed the reader: IPv4/IPv6 packets with TCP or UDP inside, wrapped in
/// each link type, and capture files written by libpcap or by hand (for damaged ones).
enum TestPackets {
    static func be16(_ v: Int) -> [UInt8] { [UInt8(truncatingIfNeeded: v >> 8), UInt8(truncatingIfNeeded: v)] }
    static func be32(_ v: UInt32) -> [UInt8] {
        [UInt8(v >> 24), UInt8(truncatingIfNeeded: v >> 16), UInt8(truncatingIfNeeded: v >> 8), UInt8(truncatingIfNeeded: v)]
    }
    static func le32(_ v: UInt32) -> [UInt8] { be32(v).reversed() }

    static func udp(_ sport: Int, _ dport: Int, _ payload: [UInt8]) -> [UInt8] {
        be16(sport) + be16(dport) + be16(8 + payload.count) + [0, 0] + payload
    }

    static func tcp(_ sport: Int, _ dport: Int, seq: UInt32, ack: UInt32 = 0, flags: UInt8, _ payload: [UInt8] = []) -> [UInt8] {
        be16(sport) + be16(dport) + be32(seq) + be32(ack) + [0x50, flags] + be16(65_535) + [0, 0, 0, 0] + payload
    }

    /// IPv4 header (no options) around a transport payload; `fragment` = (id, byte offset, more).
    static func ipv4(_ src: [UInt8], _ dst: [UInt8], proto: UInt8, _ payload: [UInt8], fragment: (Int, Int, Bool)? = nil) -> [UInt8] {
        var flags = 0
        var id = 1
        if let (fid, offset, more) = fragment {
            id = fid
            flags = offset / 8 | (more ? 0x2000 : 0)
        }
        return [0x45, 0] + be16(20 + payload.count) + be16(id) + be16(flags) + [64, proto, 0, 0] + src + dst + payload
    }

    /// IPv6 header, optionally with a hop-by-hop header and a fragment header before the payload.
    static func ipv6(
        _ src: [UInt8], _ dst: [UInt8], proto: UInt8, _ payload: [UInt8], hopByHop: Bool = false, fragment: (UInt32, Int, Bool)? = nil
    ) -> [UInt8] {
        var extensions: [UInt8] = []
        var next = proto
        if let (id, offset, more) = fragment {
            extensions = [next, 0] + be16(offset | (more ? 1 : 0)) + be32(id) + extensions
            next = 44
        }
        if hopByHop {
            extensions = [next, 0, 1, 4, 0, 0, 0, 0] + extensions
            next = 0
        }
        let body = extensions + payload
        return [0x60, 0, 0, 0] + be16(body.count) + [next, 64] + src + dst + body
    }

    static let a4: [UInt8] = [10, 0, 0, 1]
    static let b4: [UInt8] = [10, 0, 0, 2]
    static let a6: [UInt8] = [0xfd, 0] + [UInt8](repeating: 0, count: 13) + [1]
    static let b6: [UInt8] = [0xfd, 0] + [UInt8](repeating: 0, count: 13) + [2]

    /// The packet wrapped in a frame of the link type.
    static func frame(_ ip: [UInt8], _ link: LinkType, vlanTags: Int = 0) -> [UInt8] {
        let v6 = ip[0] >> 4 == 6
        let etherType = be16(v6 ? 0x86dd : 0x0800)
        switch link {
        case .ethernet:
            var header = [UInt8](repeating: 0x02, count: 12)
            for _ in 0..<vlanTags { header += be16(0x8100) + be16(42) }
            return header + etherType + ip
        case .linuxSLL:
            return be16(0) + be16(1) + be16(6) + [2, 0, 0, 0, 0, 1, 0, 0] + etherType + ip
        case .linuxSLL2:
            return etherType + [0, 0] + be32(2) + be16(1) + [0, 6] + [2, 0, 0, 0, 0, 1, 0, 0] + ip
        case .raw, .ipv4, .ipv6:
            return ip
        case .null:
            return le32(v6 ? 10 : 2) + ip
        case .loop:
            return be32(v6 ? 24 : 2) + ip
        }
    }

    /// A fresh directory for the test's files.
    static func directory() -> String {
        var template = Array("/tmp/postern-capture-test.XXXXXX".utf8CString)
        return template.withUnsafeMutableBufferPointer { String(cString: mkdtemp($0.baseAddress!)!) }
    }

    /// Removes a directory made by `directory()` and the files in it (no subdirectories are made).
    static func remove(_ directory: String) {
        guard let handle = opendir(directory) else { return }
        while let entry = readdir(handle) {
            let name = withUnsafeBytes(of: entry.pointee.d_name) { String(decoding: $0.prefix { $0 != 0 }, as: UTF8.self) }
            if name != "." && name != ".." { unlink(directory + "/" + name) }
        }
        closedir(handle)
        rmdir(directory)
    }

    /// Writes frames with libpcap; times are 1 ms apart from a fixed start (ns).
    static func write(
        _ frames: [[UInt8]], _ link: LinkType, to path: String, nanoseconds: Bool = true, start: Int64 = 1_700_000_000_123_456_789
    ) throws {
        let writer = try PcapFileWriter(path: path, linkType: link, nanoseconds: nanoseconds)
        for (i, frame) in frames.enumerated() { writer.write(frame, time: start + Int64(i) * 1_000_000) }
        writer.close()
    }

    static func writeBytes(_ bytes: [UInt8], to path: String) {
        let fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0o600)
        precondition(fd >= 0)
        _ = bytes.withUnsafeBytes { Glibc.write(fd, $0.baseAddress, $0.count) }
        close(fd)
    }

    static func readBytes(_ path: String) -> [UInt8] {
        let fd = open(path, O_RDONLY)
        precondition(fd >= 0, "cannot open \(path)")
        defer { close(fd) }
        var out: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 65_536)
        while true {
            let n = chunk.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
            if n <= 0 { break }
            out += chunk[0..<n]
        }
        return out
    }

    /// A classic pcap file header, little endian, microseconds.
    static func pcapHeader(linkType: UInt32, snaplen: UInt32 = 65_535) -> [UInt8] {
        le32(0xa1b2_c3d4) + [2, 0, 4, 0] + le32(0) + le32(0) + le32(snaplen) + le32(linkType)
    }

    static func pcapRecord(_ frame: [UInt8], caplen: Int? = nil, len: Int? = nil) -> [UInt8] {
        le32(1_700_000_000) + le32(5) + le32(UInt32(caplen ?? frame.count)) + le32(UInt32(len ?? frame.count)) + frame
    }

    /// The repository's captures folder (tests use only files in the repository).
    static var capturesDirectory: String {
        var parts = "\(#filePath)".split(separator: "/", omittingEmptySubsequences: false)
        parts.removeLast(3)  // Tests/PosternCaptureTests/TestPackets.swift
        return parts.joined(separator: "/") + "/captures"
    }

    /// `captures/third-party` is a link to `../shared/captures` beside the clone (the shared test
    /// captures, used read-only and never copied in: their README asks so). Where that folder is
    /// absent, tests of the third-party captures are skipped with this reason instead of failing.
    static func requireThirdParty() throws {
        let manifest = capturesDirectory + "/third-party/MANIFEST.tsv"
        guard FileManager.default.fileExists(atPath: manifest) else {
            throw XCTSkip("\(manifest) not found: the shared captures (../shared/captures beside the clone) are absent")
        }
    }
}
