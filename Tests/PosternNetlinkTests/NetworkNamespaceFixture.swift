import Foundation
import XCTest

#if canImport(Glibc)
    import Glibc
#endif

/// A throwaway network namespace made with `ip netns add`, for tests that need interfaces and
/// routes with known values. Needs root and iproute2; `make()` throws XCTSkip otherwise.
/// Nothing in it is connected to anything, so its addresses never carry traffic.
final class NetworkNamespaceFixture {
    let name: String
    private let ip: String
    private var deleted = false

    private init(name: String, ip: String) {
        self.name = name
        self.ip = ip
    }

    static func make(suffix: String) throws -> NetworkNamespaceFixture {
        guard geteuid() == 0 else { throw XCTSkip("needs root to create a network namespace") }
        let candidates: [String] = ["/usr/sbin/ip", "/sbin/ip", "/usr/bin/ip", "/bin/ip"]
        guard let ip = candidates.first(where: { (path: String) in access(path, X_OK) == 0 })
        else { throw XCTSkip("iproute2 `ip` is not installed") }
        let fixture = NetworkNamespaceFixture(name: "pst-nltest-\(getpid())-\(suffix)", ip: ip)
        try fixture.run(["netns", "add", fixture.name])
        return fixture
    }

    /// Deletes the namespace; the caller `defer`s this right after `make`. Safe to call twice.
    func delete() {
        guard !deleted else { return }
        deleted = true
        _ = try? run(["netns", "delete", name])
    }

    deinit { delete() }

    /// Runs `ip -n NAME args...` (inside the namespace).
    func inside(_ arguments: [String]) throws {
        try run(["-n", name] + arguments)
    }

    /// Runs `ip -n NAME args...` and returns what it printed.
    func output(_ arguments: [String]) throws -> String {
        try run(["-n", name] + arguments)
    }

    /// Runs many `ip` commands inside the namespace in one process (`ip -batch`).
    func batch(_ commands: [String]) throws {
        let file = FileManager.default.temporaryDirectory.appendingPathComponent("\(name)-\(UUID().uuidString).batch")
        try commands.joined(separator: "\n").appending("\n").write(to: file, atomically: true, encoding: .utf8)
        defer { try? FileManager.default.removeItem(at: file) }
        try inside(["-batch", file.path])
    }

    /// Creates an interface with a fixed MAC and MTU. `dummy` is the natural choice, but some
    /// kernels are built without it; `ifb` behaves the same for our purposes (an up interface that
    /// holds addresses and routes and reaches nothing), so it is the fallback.
    func addInterface(_ interface: String, mac: String, mtu: Int) throws {
        let common = ["link", "add", interface, "address", mac, "mtu", String(mtu), "type"]
        do {
            try inside(common + ["dummy"])
        } catch {
            try inside(common + ["ifb"])
        }
    }

    /// Runs `body` on a new thread that has joined the namespace, and returns its result. A
    /// dedicated thread because setns(CLONE_NEWNET) changes only the calling thread, and that thread
    /// must not go back to a pool afterwards; it exits when `body` returns.
    func run<T: Sendable>(_ body: @escaping @Sendable () throws -> T) throws -> T {
        let path = "/var/run/netns/\(name)"
        let box = ResultBox<T>()
        let thread = Thread {
            box.set(
                Result {
                    let fd = open(path, O_RDONLY | O_CLOEXEC)
                    guard fd >= 0 else { throw FixtureError("open(\(path)) failed: errno \(errno)") }
                    defer { close(fd) }
                    guard try Self.setns(fd, Self.cloneNewNet) == 0 else {
                        throw FixtureError("setns(\(path), CLONE_NEWNET) failed: errno \(errno)")
                    }
                    return try body()
                })
        }
        thread.start()
        return try box.wait().get()
    }

    // MARK: - Plumbing

    /// CLONE_NEWNET from <sched.h>, which Swift's Glibc module does not export.
    private static let cloneNewNet: Int32 = 0x4000_0000

    /// setns(2) is likewise not exported; look it up in libc at run time.
    private static func setns(_ fd: Int32, _ type: Int32) throws -> Int32 {
        typealias SetnsFunction = @convention(c) (Int32, Int32) -> Int32
        guard let symbol = dlsym(dlopen(nil, RTLD_NOW), "setns") else { throw FixtureError("dlsym(setns) failed") }
        return unsafeBitCast(symbol, to: SetnsFunction.self)(fd, type)
    }

    @discardableResult
    private func run(_ arguments: [String]) throws -> String {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: ip)
        process.arguments = arguments
        let output = Pipe()
        process.standardOutput = output
        process.standardError = output
        try process.run()
        let data = output.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        let text = String(decoding: data, as: UTF8.self)
        guard process.terminationStatus == 0 else {
            throw FixtureError("ip \(arguments.joined(separator: " ")) exited \(process.terminationStatus): \(text)")
        }
        return text
    }

    struct FixtureError: Error, CustomStringConvertible {
        var description: String
        init(_ description: String) { self.description = description }
    }

    /// Hands a result from the namespace thread back to the test thread.
    private final class ResultBox<T: Sendable>: @unchecked Sendable {
        private let done = DispatchSemaphore(value: 0)
        private var result: Result<T, Error>?  // written once before `done` is signalled

        func set(_ result: Result<T, Error>) {
            self.result = result
            done.signal()
        }

        func wait() -> Result<T, Error> {
            done.wait()
            return result!
        }
    }
}
