import ArgumentParser
import Foundation

/// `postern demo`: the main job on the built-in lab. Brings the namespace lab up, runs a server in
/// `wan` and a mediator in `lan` behind the NAT gateway, exposes an HTTP server of the LAN through a
/// forward, fetches a page from `user`, shows what happened, and removes everything again.
struct DemoCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "demo",
        abstract: "Run the demo on the built-in namespace lab (needs root)."
    )

    @Option(help: "Namespace prefix for the demo's lab.")
    var prefix = "demo-"

    func run() throws {
        guard geteuid() == 0 else {
            throw ValidationError("the demo builds network namespaces: run it as root")
        }
        setvbuf(stdout, nil, _IOLBF, 0)
        // This very binary, for the server, mediator and ctl it starts: `postern demo` found on $PATH
        // has no path in argv[0].
        let me = Self.executablePath()
        let lab = try Self.findLab(executable: me)
        let work = FileManager.default.temporaryDirectory.appendingPathComponent("postern-demo-\(getpid())")
        try FileManager.default.createDirectory(at: work, withIntermediateDirectories: true)
        func ns(_ name: String) -> String { prefix + name }
        func step(_ s: String) { print("\u{1B}[1m==> \(s)\u{1B}[0m") }

        let prefix = prefix
        let cleanup = DemoCleanup { children in
            step("Cleaning up")
            for p in children { Self.stop(p) }
            _ = try? Self.shell([lab, "down"], env: ["POSTERN_LAB_PREFIX": prefix], quiet: true)
            try? FileManager.default.removeItem(at: work)
            print("lab removed, processes stopped")
        }
        // Ctrl-C (or SIGTERM) must not leave the namespaces, the children or the work directory behind.
        cleanup.runOnInterrupt()
        defer { cleanup.run() }

        step("Bringing up the lab (namespaces \(ns("lan")), \(ns("lanhost")), \(ns("gw")), \(ns("wan")), \(ns("user")))")
        try Self.shell(tracked: cleanup, [lab, "up"], env: ["POSTERN_LAB_PREFIX": prefix], quiet: true)
        print("LAN 192.168.77.0/24 behind NAT gateway 203.0.113.1; server 203.0.113.10; user 203.0.113.20")

        let secret = work.appendingPathComponent("secret")
        guard
            FileManager.default.createFile(
                atPath: secret.path, contents: Data("demo-\(UUID().uuidString)\n".utf8), attributes: [.posixPermissions: 0o600])
        else { throw ValidationError("cannot write the demo's secret file \(secret.path)") }
        let site = work.appendingPathComponent("site")
        try FileManager.default.createDirectory(at: site, withIntermediateDirectories: true)
        try "<h1>Router configuration page</h1>\n<p>Served from 192.168.77.10 inside the private LAN.</p>\n"
            .write(to: site.appendingPathComponent("index.html"), atomically: true, encoding: .utf8)

        func start(_ namespace: String, _ log: String, _ args: [String]) throws -> Process {
            let p = Process()
            p.executableURL = URL(fileURLWithPath: "/usr/sbin/ip")
            if !FileManager.default.fileExists(atPath: "/usr/sbin/ip") { p.executableURL = URL(fileURLWithPath: "/sbin/ip") }
            p.arguments = ["netns", "exec", ns(namespace)] + args
            let logURL = work.appendingPathComponent(log)
            guard FileManager.default.createFile(atPath: logURL.path, contents: nil) else {
                throw ValidationError("cannot create the log file \(logURL.path)")
            }
            let handle = try FileHandle(forWritingTo: logURL)
            p.standardOutput = handle
            p.standardError = handle
            try cleanup.launch(p)
            return p
        }

        step("Starting an HTTP server on a LAN host (192.168.77.10:80)")
        _ = try start("lanhost", "http.log", ["python3", "-m", "http.server", "80", "--bind", "192.168.77.10", "--directory", site.path])

        let state = work.appendingPathComponent("state").path
        step("Making the server's TLS key; the mediator will pin its fingerprint (postern fingerprint)")
        let fingerprint = try Self.shell(tracked: cleanup, [me, "fingerprint", "--create", "--state-dir", state]).trimmingCharacters(
            in: .whitespacesAndNewlines)
        print(fingerprint)

        step("Starting the server on the public side: TLS service port 7000, forward 203.0.113.10:8080 -> acme/192.168.77.10:80")
        _ = try start(
            "wan", "server.log",
            [
                me, "server", "--listen", "0.0.0.0:7000", "--secret-file", secret.path, "--state-dir", state,
                "--admin", "127.0.0.1:7070", "--forward", "tcp:0.0.0.0:8080=acme/192.168.77.10:80",
            ])

        step("Starting mediator 'acme' in the LAN: it dials out through the NAT")
        _ = try start(
            "lan", "mediator.log",
            [
                me, "mediator", "--server", "203.0.113.10:7000", "--name", "acme",
                "--secret-file", secret.path, "--allow", "192.168.77.0/24", "--server-fingerprint", fingerprint,
            ])

        var connected = false
        for _ in 0..<100 {
            if let out = try? Self.shell(
                tracked: cleanup, ["ip", "netns", "exec", ns("wan"), me, "ctl", "--state-dir", state, "mediators"], quiet: true),
                out.contains("acme")
            {
                connected = true
                break
            }
            usleep(100_000)
        }
        guard connected else {
            print("the mediator did not connect; its log:")
            print((try? String(contentsOf: work.appendingPathComponent("mediator.log"), encoding: .utf8)) ?? "")
            throw ExitCode(1)
        }
        step("The server sees the mediator and its environment (postern ctl mediators)")
        print(try Self.shell(tracked: cleanup, ["ip", "netns", "exec", ns("wan"), me, "ctl", "--state-dir", state, "mediators"]))

        step("From the user's side, the LAN host itself is unreachable (curl http://192.168.77.10/)")
        let direct =
            (try? Self.shell(
                tracked: cleanup, ["ip", "netns", "exec", ns("user"), "curl", "-sS", "--max-time", "2", "http://192.168.77.10/"],
                quiet: true))
            ?? ""
        print(direct.isEmpty ? "no route: as expected, the private network is not reachable from outside" : direct)

        step("Through Postern: curl http://203.0.113.10:8080/ from the user's host")
        let page = try Self.shell(
            tracked: cleanup, ["ip", "netns", "exec", ns("user"), "curl", "-sS", "--max-time", "10", "http://203.0.113.10:8080/"])
        print(page)
        guard page.contains("Router configuration page") else {
            print("unexpected answer")
            throw ExitCode(1)
        }
        step("What the LAN's web server saw (the mediator's address, through the tunnel)")
        print((try? String(contentsOf: work.appendingPathComponent("http.log"), encoding: .utf8)) ?? "")
        step("Server log")
        print((try? String(contentsOf: work.appendingPathComponent("server.log"), encoding: .utf8)) ?? "")
        print("Demo succeeded: a user on the public side fetched a page from a private LAN through a NAT nobody reconfigured.")
    }

    /// Children inherit the signal mask of the thread that spawns them, and the runtime's threads
    /// block most signals: unblock them first so the children can be stopped with SIGTERM.
    static func launch(_ p: Process) throws {
        var none = sigset_t()
        sigemptyset(&none)
        pthread_sigmask(SIG_SETMASK, &none, nil)
        try p.run()
    }

    /// SIGTERM, then SIGKILL after two seconds; polls rather than relying on a run loop.
    static func stop(_ p: Process) {
        let pid = p.processIdentifier
        guard pid > 0, p.isRunning else { return }
        kill(pid, SIGTERM)
        for _ in 0..<40 where p.isRunning { usleep(50_000) }
        if p.isRunning { kill(pid, SIGKILL) }
        for _ in 0..<40 where p.isRunning { usleep(50_000) }
    }

    /// The running binary's path (argv[0] may be a bare name found on $PATH, or relative).
    static func executablePath() -> String {
        if let path = try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe") { return path }
        return URL(fileURLWithPath: CommandLine.arguments[0]).standardizedFileURL.path
    }

    /// tools/lab of the checkout this binary was built from (or the current directory's).
    static func findLab(executable: String) throws -> String {
        var candidates: [URL] = [URL(fileURLWithPath: FileManager.default.currentDirectoryPath)]
        candidates.append(URL(fileURLWithPath: executable).deletingLastPathComponent())
        for start in candidates {
            var dir = start
            for _ in 0..<6 {
                let lab = dir.appendingPathComponent("tools/lab").path
                if FileManager.default.isExecutableFile(atPath: lab) { return lab }
                dir = dir.deletingLastPathComponent()
            }
        }
        throw ValidationError("cannot find tools/lab: run the demo from the Postern checkout")
    }

    /// Runs `args` to its end and returns its standard output. `tracked`: started through the demo's
    /// cleanup, so an interrupt stops it (or, once the cleanup has begun, it does not start at all).
    @discardableResult
    static func shell(
        tracked cleanup: DemoCleanup? = nil, _ args: [String], env: [String: String] = [:], quiet: Bool = false
    ) throws -> String {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        p.arguments = args
        var environment = ProcessInfo.processInfo.environment
        environment.merge(env) { $1 }
        p.environment = environment
        let pipe = Pipe()
        p.standardOutput = pipe
        p.standardError = quiet ? FileHandle.nullDevice : FileHandle.standardError
        if let cleanup { try cleanup.launch(p) } else { try launch(p) }
        let data = pipe.fileHandleForReading.readDataToEndOfFile()
        p.waitUntilExit()
        let out = String(decoding: data, as: UTF8.self)
        guard p.terminationStatus == 0 else {
            throw ValidationError("\(args.joined(separator: " ")) failed (\(p.terminationStatus))\(quiet ? "" : ": \(out)")")
        }
        return out
    }
}

/// What the demo undoes however it ends: its children, its lab, its work directory. `run` does it
/// once, from the end of the demo or from SIGINT/SIGTERM, whichever comes first. Children start
/// through `launch`, under the same lock as `run`: each one either starts before the cleanup (which
/// then stops it) or not at all — never between the cleanup and the exit that follows an interrupt.
final class DemoCleanup: @unchecked Sendable {
    private let lock = NSLock()
    private var children: [Process] = []
    private var done = false
    private let body: ([Process]) -> Void

    init(_ body: @escaping ([Process]) -> Void) { self.body = body }

    /// Starts `p` and stops it with the rest at cleanup. Once the cleanup has begun (an interrupt:
    /// the demo's own end starts nothing after it), starts nothing and waits for the signal's thread
    /// to end the process.
    func launch(_ p: Process) throws {
        lock.lock()
        guard !done else {
            lock.unlock()
            while true { pause() }
        }
        defer { lock.unlock() }
        try DemoCommand.launch(p)
        children.append(p)
    }

    private var interrupted = false

    /// Called by the demo's own end too: after an interrupt it waits there (the cleanup runs on the
    /// signal's thread, which then exits 128 + the signal) instead of going on with a half-removed lab.
    func run() { run(afterSignal: false) }

    private func run(afterSignal: Bool) {
        lock.lock()
        if afterSignal { interrupted = true }
        if !done {
            done = true
            body(children)
        }
        let wait = interrupted && !afterSignal
        lock.unlock()
        while wait { pause() }
    }

    /// On SIGINT or SIGTERM: `run`, then exit 128 + the signal. The handler only writes the signal's
    /// number to a pipe (all a signal handler may do); a thread reading it does the rest. A handler,
    /// not SIG_IGN with a dispatch source as the services use: ignored signals stay ignored in the
    /// children, which could then not be stopped with SIGTERM.
    func runOnInterrupt() {
        var fds: [CInt] = [-1, -1]
        guard pipe(&fds) == 0 else { return }
        demoSignalPipe = fds[1]
        for sig in [SIGINT, SIGTERM] {
            signal(sig) { sig in
                var byte = UInt8(truncatingIfNeeded: sig)
                _ = write(demoSignalPipe, &byte, 1)
            }
        }
        let reader = fds[0]
        Thread { [self] in
            var byte: UInt8 = 0
            while read(reader, &byte, 1) != 1 {}
            run(afterSignal: true)
            exit(128 + CInt(byte))
        }.start()
    }
}

/// The write end of the demo's signal pipe, for its signal handler (which can capture nothing).
nonisolated(unsafe) private var demoSignalPipe: CInt = -1
