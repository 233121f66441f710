import Foundation
import PosternCore
import PosternPcap

#if canImport(Glibc)
    import Glibc
#endif

/// `ctl capture`: pcap recordings of one forward each, started and stopped through the admin API while
/// the server runs, without a restart or `--pcap` for everything. The server writes each into its own
/// file in `directory` (the state directory's `captures/`, mode 0700; files 0600, created fresh, never
/// through a link), since the admin API may be reached from afar and must not name paths on the
/// server; `ctl capture get` downloads one. Bounded three ways: at most `maxActive` at once, each file
/// stops growing at its byte limit (the capture then ends by itself, "size limit reached"), and only
/// the `maxKept` newest finished ones are kept (older files are deleted). A capture ends when it is
/// stopped, when its forward is removed (its port closes) and when the server stops. Runs on the
/// server's event loop, like the forwards it taps.
final class ForwardCaptures {
    struct Settings {
        var directory: String
        var maxActive = 4
        var maxKept = 16
        var defaultMaxBytes = 8 << 20
        /// A download is read whole into memory: this bounds it.
        var largestMaxBytes = 64 << 20
    }

    struct View: Encodable, Hashable {
        var id: Int
        var forward: String
        var file: String
        /// "recording" or "stopped".
        var state: String
        var reason: String?
        var packets: Int
        var bytes: Int
        var maxBytes: Int
        /// Packets not written because the limit was reached.
        var dropped: Int
    }

    struct Failure: Error, CustomStringConvertible {
        enum Kind { case unknown, conflict, invalid, io }
        var kind: Kind
        var description: String
    }

    private final class Entry {
        let id: Int
        let forward: any Forward
        let recorder: PcapRecorder
        var reason: String?
        init(id: Int, forward: any Forward, recorder: PcapRecorder) {
            self.id = id
            self.forward = forward
            self.recorder = recorder
        }
    }

    let settings: Settings
    private var entries: [Entry] = []
    private var nextID = 1

    init(settings: Settings) {
        self.settings = settings
    }

    var views: [View] { entries.map(view) }

    private func view(_ e: Entry) -> View {
        View(
            id: e.id, forward: e.forward.spec.text, file: e.recorder.path, state: e.reason == nil ? "recording" : "stopped",
            reason: e.reason,
            packets: e.recorder.packets, bytes: e.recorder.bytesWritten, maxBytes: e.recorder.maxBytes, dropped: e.recorder.dropped)
    }

    /// Starts recording `forward` into a new file of at most `maxBytes` (default `defaultMaxBytes`).
    func start(_ forward: any Forward, maxBytes: Int?) throws(Failure) -> View {
        let limit = maxBytes ?? settings.defaultMaxBytes
        guard (1024...settings.largestMaxBytes).contains(limit) else {
            throw Failure(kind: .invalid, description: "maxBytes must be 1024 to \(settings.largestMaxBytes)")
        }
        if entries.contains(where: { $0.reason == nil && $0.forward === forward }) {
            throw Failure(kind: .conflict, description: "forward \(forward.spec) is being captured already (ctl capture list)")
        }
        let active = entries.filter { $0.reason == nil }.count
        guard active < settings.maxActive else {
            throw Failure(kind: .conflict, description: "\(active) captures run already, the most there may be: stop one first")
        }
        let id = nextID
        let path = try createFile(id)
        let recorder: PcapRecorder
        do {
            recorder = try PcapRecorder(path: path, maxBytes: limit, maxFiles: 1, stopAtLimit: true)
        } catch {
            unlink(path)
            throw Failure(kind: .io, description: "cannot write \(path): \(error)")
        }
        nextID += 1
        let entry = Entry(id: id, forward: forward, recorder: recorder)
        recorder.onFull = { [weak self, weak entry] in
            guard let self, let entry else { return }
            self.end(entry, "size limit of \(limit) bytes reached")
        }
        entries.append(entry)
        forward.startCapture(recorder)
        prune()
        return view(entry)
    }

    func stop(id: Int) throws(Failure) -> View {
        guard let entry = entries.first(where: { $0.id == id }) else { throw Failure(kind: .unknown, description: "no capture \(id)") }
        end(entry, "stopped through the admin API")
        return view(entry)
    }

    /// The forward is gone (removed, or the server stops): its captures end with `reason`.
    func forwardStopped(_ forward: any Forward, reason: String = "the forward was removed") {
        for entry in entries where entry.forward === forward { end(entry, reason) }
    }

    func stopAll(reason: String) {
        for entry in entries { end(entry, reason) }
    }

    /// The recorder of capture `id` (its file for a download); nil for an unknown id.
    func recorder(id: Int) -> PcapRecorder? { entries.first { $0.id == id }?.recorder }

    private func end(_ entry: Entry, _ reason: String) {
        guard entry.reason == nil else { return }
        entry.reason = reason
        entry.forward.stopCapture()
        entry.recorder.close()
    }

    /// Only the `maxKept` newest finished captures keep their files.
    private func prune() {
        let finished = entries.filter { $0.reason != nil }
        guard finished.count > settings.maxKept else { return }
        for old in finished.prefix(finished.count - settings.maxKept) {
            unlink(old.recorder.path)
            entries.removeAll { $0 === old }
        }
    }

    /// A new file, 0600, in a 0700 directory; O_EXCL and O_NOFOLLOW so nothing already there (a file
    /// of an earlier run, a planted link) is written through.
    private func createFile(_ id: Int) throws(Failure) -> String {
        if mkdir(settings.directory, 0o700) != 0 && errno != EEXIST {
            throw Failure(kind: .io, description: "cannot create \(settings.directory): \(String(cString: strerror(errno)))")
        }
        var info = stat()
        guard lstat(settings.directory, &info) == 0, info.st_mode & S_IFMT == S_IFDIR else {
            throw Failure(kind: .io, description: "\(settings.directory) is not a directory")
        }
        let stamp = Int(Date().timeIntervalSince1970)
        let path = "\(settings.directory)/capture-\(stamp)-\(id).pcap"
        let fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0o600)
        guard fd >= 0 else { throw Failure(kind: .io, description: "cannot create \(path): \(String(cString: strerror(errno)))") }
        close(fd)
        return path
    }
}
