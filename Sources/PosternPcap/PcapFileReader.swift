import CPcap
import PosternCapture

/// Reads a capture file with libpcap: pcap (micro- and nanosecond timestamps, either byte order) and
/// pcapng (several interfaces). Timestamps come as nanoseconds whatever the file holds. Every failure
/// is a `CaptureError` naming the file and, once packets are read, the packet.
public final class PcapFileReader {
    public let path: String
    public let linkType: LinkType
    private var handle: OpaquePointer?
    /// Packets read so far.
    public private(set) var count = 0

    public init(path: String) throws(CaptureError) {
        self.path = path
        var errorBuffer = [CChar](repeating: 0, count: Int(PCAP_ERRBUF_SIZE) + 1)
        guard let handle = pcap_open_offline_with_tstamp_precision(path, UInt32(PCAP_TSTAMP_PRECISION_NANO), &errorBuffer) else {
            throw CaptureError(file: path, reason: Self.withoutPath(Self.text(errorBuffer), path))
        }
        let raw = pcap_datalink(handle)
        guard raw >= 0, let type = LinkType(rawValue: UInt32(raw)) else {
            let name = pcap_datalink_val_to_name(raw).map { String(cString: $0) } ?? "unknown"
            pcap_close(handle)
            throw CaptureError(
                file: path, reason: "link type \(raw) (\(name)) is not supported; this reader knows \(LinkType.supportedText)")
        }
        self.handle = handle
        self.linkType = type
    }

    deinit {
        if let handle { pcap_close(handle) }
    }

    /// The next packet, nil at the end of the file.
    public func next() throws(CaptureError) -> CaptureRecord? {
        guard let handle else { return nil }
        var header: UnsafeMutablePointer<pcap_pkthdr>?
        var data: UnsafePointer<UInt8>?
        let result = pcap_next_ex(handle, &header, &data)
        switch result {
        case 1:
            count += 1
            guard let header, let data else {
                throw CaptureError(file: path, packet: count, reason: "libpcap returned a packet without data")
            }
            let captured = Int(header.pointee.caplen)
            let bytes = [UInt8](UnsafeBufferPointer(start: data, count: captured))
            let time = Int64(header.pointee.ts.tv_sec) * 1_000_000_000 + Int64(header.pointee.ts.tv_usec)
            return CaptureRecord(number: count, time: time, linkType: linkType, bytes: bytes, originalLength: Int(header.pointee.len))
        case PCAP_ERROR_BREAK:
            // The end of a savefile.
            close()
            return nil
        default:
            let reason = Self.withoutPath(String(cString: pcap_geterr(handle)), path)
            close()
            throw CaptureError(file: path, packet: count + 1, reason: reason.isEmpty ? "unreadable packet record" : reason)
        }
    }

    private func close() {
        if let handle { pcap_close(handle) }
        handle = nil
    }

    /// Every packet of the file.
    public static func readAll(path: String) throws(CaptureError) -> [CaptureRecord] {
        let reader = try PcapFileReader(path: path)
        var records: [CaptureRecord] = []
        while let record = try reader.next() { records.append(record) }
        return records
    }

    /// Reads a file and splits it into flows.
    public static func flows(path: String) throws(CaptureError) -> CaptureSummary {
        let reader = try PcapFileReader(path: path)
        var flows = CaptureFlows()
        while let record = try reader.next() { flows.add(record) }
        return flows.finish()
    }

    /// libpcap often starts its message with the file name, which `CaptureError` already gives.
    static func withoutPath(_ text: String, _ path: String) -> String {
        text.hasPrefix(path + ": ") ? String(text.dropFirst(path.count + 2)) : text
    }

    static func text(_ buffer: [CChar]) -> String {
        let text = buffer.withUnsafeBufferPointer { String(cString: $0.baseAddress!) }
        return text.isEmpty ? "cannot be opened as a capture" : text
    }
}
