import CPcap
import Glibc
import PosternCapture

/// A live libpcap capture on one interface, for replay in TUN mode: incoming packets only (what the
/// path delivered, not what this host answers), narrowed by a BPF filter, in immediate mode so each
/// packet is seen as it arrives, read without blocking past a deadline. Packets come as `CaptureRecord`s
/// of the interface's link type (Ethernet on a LAN, raw IP on a tun device).
public final class PcapLiveCapture {
    public let interface: String
    public let linkType: LinkType
    private var handle: OpaquePointer?

    public struct Failure: Error, CustomStringConvertible {
        public var description: String
    }

    public init(interface: String, filter: String, snapshotLength: Int32 = 65_535) throws(Failure) {
        self.interface = interface
        var errorBuffer = [CChar](repeating: 0, count: Int(PCAP_ERRBUF_SIZE) + 1)
        guard let handle = pcap_create(interface, &errorBuffer) else {
            throw Failure(description: "capture on \(interface): \(PcapFileReader.text(errorBuffer))")
        }
        func failed(_ what: String) -> Failure {
            let text = String(cString: pcap_geterr(handle))
            pcap_close(handle)
            return Failure(description: "capture on \(interface): \(what): \(text)")
        }
        pcap_set_snaplen(handle, snapshotLength)
        pcap_set_promisc(handle, 0)
        pcap_set_immediate_mode(handle, 1)
        pcap_set_timeout(handle, 50)
        let activated = pcap_activate(handle)
        if activated < 0 { throw failed("cannot start (\(activated))") }
        if pcap_setdirection(handle, PCAP_D_IN) != 0 { throw failed("cannot keep to incoming packets") }
        var program = bpf_program()
        if pcap_compile(handle, &program, filter, 1, PCAP_NETMASK_UNKNOWN) != 0 { throw failed("filter '\(filter)'") }
        let set = pcap_setfilter(handle, &program)
        pcap_freecode(&program)
        if set != 0 { throw failed("filter '\(filter)'") }
        if pcap_setnonblock(handle, 1, &errorBuffer) != 0 { throw failed("non-blocking mode") }
        let raw = pcap_datalink(handle)
        guard raw >= 0, let type = LinkType(rawValue: UInt32(raw)) else {
            pcap_close(handle)
            throw Failure(description: "capture on \(interface): link type \(raw) is not supported")
        }
        self.linkType = type
        self.handle = handle
    }

    deinit {
        if let handle { pcap_close(handle) }
    }

    /// Reads packets until `stop` says, after a packet, that there are enough, or until `deadline`
    /// (CLOCK_MONOTONIC seconds, see `now`) passes. Waits on the capture's descriptor between packets.
    public func collect(until deadline: Double, stop: ([CaptureRecord]) -> Bool) throws(Failure) -> [CaptureRecord] {
        guard let handle else { return [] }
        var records: [CaptureRecord] = []
        let fd = pcap_get_selectable_fd(handle)
        while Self.now() < deadline {
            var header: UnsafeMutablePointer<pcap_pkthdr>?
            var data: UnsafePointer<UInt8>?
            let result = pcap_next_ex(handle, &header, &data)
            if result == 1, let header, let data {
                let bytes = [UInt8](UnsafeBufferPointer(start: data, count: Int(header.pointee.caplen)))
                let time = Int64(header.pointee.ts.tv_sec) * 1_000_000_000 + Int64(header.pointee.ts.tv_usec) * 1_000
                records.append(
                    CaptureRecord(
                        number: records.count + 1, time: time, linkType: linkType, bytes: bytes, originalLength: Int(header.pointee.len)))
                if stop(records) { break }
                continue
            }
            if result < 0 { throw Failure(description: "capture on \(interface): \(String(cString: pcap_geterr(handle)))") }
            let left = max(0, deadline - Self.now())
            var poller = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
            _ = poll(&poller, 1, Int32(min(left, 0.1) * 1_000) + 1)
        }
        return records
    }

    public static func now() -> Double {
        var ts = timespec()
        clock_gettime(CLOCK_MONOTONIC, &ts)
        return Double(ts.tv_sec) + Double(ts.tv_nsec) / 1e9
    }
}
