import CPcap
import PosternCapture

/// Writes a pcap file with libpcap (what tcpdump and Wireshark open): one link type, microsecond or
/// nanosecond timestamps.
public final class PcapFileWriter {
    public let path: String
    private var dead: OpaquePointer?
    private var dumper: OpaquePointer?

    public init(path: String, linkType: LinkType, nanoseconds: Bool = true, snapshotLength: Int = 262_144) throws(CaptureError) {
        self.path = path
        let precision = UInt32(nanoseconds ? PCAP_TSTAMP_PRECISION_NANO : PCAP_TSTAMP_PRECISION_MICRO)
        // libpcap takes the DLT number here (it writes the LINKTYPE one): they differ for raw IP only.
        let dlt = linkType == .raw ? Int32(DLT_RAW) : Int32(linkType.rawValue)
        guard let dead = pcap_open_dead_with_tstamp_precision(dlt, Int32(snapshotLength), precision) else {
            throw CaptureError(file: path, reason: "libpcap cannot describe link type \(linkType)")
        }
        guard let dumper = pcap_dump_open(dead, path) else {
            let reason = PcapFileReader.withoutPath(String(cString: pcap_geterr(dead)), path)
            pcap_close(dead)
            throw CaptureError(file: path, reason: reason)
        }
        self.dead = dead
        self.dumper = dumper
        self.nanoseconds = nanoseconds
    }

    private let nanoseconds: Bool

    /// Appends one frame; `originalLength` defaults to the frame's size (pass more for a cut frame).
    public func write(_ bytes: [UInt8], time: Int64, originalLength: Int? = nil) {
        guard let dumper else { return }
        var header = pcap_pkthdr()
        header.ts.tv_sec = Int(time / 1_000_000_000)
        let fraction = Int(time % 1_000_000_000)
        header.ts.tv_usec = nanoseconds ? fraction : fraction / 1000
        header.caplen = UInt32(bytes.count)
        header.len = UInt32(originalLength ?? bytes.count)
        bytes.withUnsafeBufferPointer { buffer in
            pcap_dump(UnsafeMutablePointer<UInt8>(dumper), &header, buffer.baseAddress)
        }
    }

    /// Hands what was written to the file (readers see whole packets up to here).
    public func flush() {
        if let dumper { pcap_dump_flush(dumper) }
    }

    public func close() {
        if let dumper {
            pcap_dump_flush(dumper)
            pcap_dump_close(dumper)
        }
        if let dead { pcap_close(dead) }
        dumper = nil
        dead = nil
    }

    deinit { close() }
}
