import PosternCapture

#if canImport(Glibc)
    import Glibc
#endif

/// Writes packets to a pcap file (raw IP, nanosecond timestamps) that rotates by size: when the next
/// packet would take FILE past `maxBytes`, FILE becomes FILE.1 (FILE.1 becomes FILE.2, ...) and a new
/// FILE starts; at most `maxFiles` files exist, the oldest goes. Or, with `stopAtLimit` (a capture
/// started through `ctl capture`), FILE is never rotated and stops growing at `maxBytes`. Not thread-safe: one owner (one event
/// loop) writes. Writing is synchronous (stdio-buffered, flushed on rotation and close).
public final class PcapRecorder {
    public let path: String
    public let maxBytes: Int
    public let maxFiles: Int
    private var writer: PcapFileWriter?
    private var written = 0
    /// Packets dropped because a file could not be opened (disk full, no rights): counted, not fatal.
    public private(set) var failures = 0
    public private(set) var packets = 0
    static let fileHeader = 24
    static let recordHeader = 16

    /// With `stopAtLimit`: the file is never rotated; the first packet that would take it past
    /// `maxBytes` is dropped, and so is every one after it (`isFull`; `onFull` is called once).
    public let stopAtLimit: Bool
    public private(set) var isFull = false
    /// Packets dropped because the file was full (`stopAtLimit`).
    public private(set) var dropped = 0
    /// Called once, when `stopAtLimit` drops the first packet.
    public var onFull: (() -> Void)?

    public init(path: String, maxBytes: Int, maxFiles: Int, stopAtLimit: Bool = false) throws(CaptureError) {
        self.path = path
        self.maxBytes = max(maxBytes, Self.fileHeader + Self.recordHeader + 64)
        self.maxFiles = max(1, maxFiles)
        self.stopAtLimit = stopAtLimit
        writer = try PcapFileWriter(path: path, linkType: .raw, nanoseconds: true)
        written = Self.fileHeader
    }

    /// Appends one IP packet at `time` (ns since the epoch).
    public func write(_ packet: [UInt8], time: Int64) {
        let size = Self.recordHeader + packet.count
        if stopAtLimit && (isFull || written + size > maxBytes) {
            dropped += 1
            if !isFull {
                isFull = true
                onFull?()
            }
            return
        }
        if written + size > maxBytes && written > Self.fileHeader { rotate() }
        guard let writer else {
            failures += 1
            return
        }
        writer.write(packet, time: time)
        // Each packet reaches the file at once: a reader (tcpdump -r while the server runs) and a
        // server that is killed both find whole packets.
        writer.flush()
        written += size
        packets += 1
    }

    private func rotate() {
        writer?.close()
        writer = nil
        if maxFiles == 1 {
            unlink(path)
        } else {
            unlink("\(path).\(maxFiles - 1)")
            for n in stride(from: maxFiles - 2, through: 1, by: -1) { rename("\(path).\(n)", "\(path).\(n + 1)") }
            rename(path, "\(path).1")
        }
        writer = try? PcapFileWriter(path: path, linkType: .raw, nanoseconds: true)
        written = Self.fileHeader
    }

    public func close() {
        writer?.close()
        writer = nil
    }

    /// The bytes written to the current file (headers included).
    public var bytesWritten: Int { written }

    deinit { close() }
}
