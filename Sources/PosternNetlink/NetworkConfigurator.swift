import PosternWire

#if canImport(Glibc)
    import Glibc
#endif

/// Makes and undoes the network changes of one TUN mode device through netlink (libmnl) and
/// /proc/sys, never by running `ip`. Each change is first recorded in the journal and the state file
/// (`stateFile`), then requested with NLM_F_ACK; a refused change is forgotten again and reported in
/// words. `undoAll` reverts everything newest first; `cleanLeftovers` does the same for the journal a
/// crashed run left in the state file. Blocking: run it off the event loop, from one thread at a time.
public final class NetworkConfigurator {
    public typealias Prefix = MediatorEnvironment.AddressPrefix

    public let stateFile: String
    public private(set) var journal = UndoJournal()
    private var sequence: UInt32

    public init(stateFile: String) {
        self.stateFile = stateFile
        self.sequence = UInt32(truncatingIfNeeded: time(nil))
    }

    // MARK: - Changes

    /// Records a device about to be created (by TUNSETIFF), so a crash leaves its name behind.
    public func recordLink(name: String) throws {
        try record(.link(name: name))
    }

    /// Sets the MTU and brings the device up. Not journaled: it goes with the device.
    public func setLinkUp(name: String, mtu: Int) throws {
        let index = try Self.index(of: name)
        try send { NetlinkRequest.setLinkUp(index: index, name: name, mtu: UInt32(mtu), sequence: $0) }
    }

    public func addAddress(interface: String, prefix: Prefix) throws {
        let index = try Self.index(of: interface)
        try change(.address(interface: interface, prefix: prefix)) {
            NetlinkRequest.address(add: true, index: index, interface: interface, prefix: prefix, sequence: $0)
        }
    }

    public func addRoute(interface: String, destination: Prefix) throws {
        let index = try Self.index(of: interface)
        try change(.route(interface: interface, destination: destination.network)) {
            NetlinkRequest.route(add: true, index: index, interface: interface, destination: destination, sequence: $0)
        }
    }

    public func addProxyNeighbour(interface: String, address: IPAddress) throws {
        let index = try Self.index(of: interface)
        // The kernel does not refuse a duplicate proxy entry (no EEXIST): look first, unless it is ours.
        if !journal.changes.contains(.proxyNeighbour(interface: interface, address: address)),
            try ProxyNeighbourMessage.all().contains(ProxyNeighbourMessage(interfaceIndex: index, address: address))
        {
            throw NetlinkError.requestFailed("add a proxy neighbour entry for \(address) on \(interface)", errno: EEXIST)
        }
        try change(.proxyNeighbour(interface: interface, address: address)) {
            NetlinkRequest.proxyNeighbour(add: true, index: index, interface: interface, address: address, sequence: $0)
        }
    }

    /// Whether a host on `interface` already answers for `address`, asked the kernel's way: an entry
    /// the cache holds is forgotten (a stale one may name a host long gone), then an RTM_NEWNEIGH
    /// with NTF_USE makes the kernel send an ARP request (IPv4) or a neighbour solicitation (IPv6)
    /// now, and the neighbour table is read every 50 ms for up to `wait` seconds. Returns the hardware
    /// address that answered (or that a permanent entry names), or nil when none did. Not an RFC 5227
    /// probe (the request carries this host's own LAN address as its source, and a host answering
    /// later than `wait` is missed), but it needs no raw socket, and it leaves only an ordinary cache
    /// entry the kernel expires: nothing to undo. Blocking: run it off the event loop.
    public func neighbourAnswering(interface: String, address: IPAddress, wait: Double = 1.0) throws -> [UInt8]? {
        let index = try Self.index(of: interface)
        func entry() throws -> NeighbourMessage? {
            try NeighbourMessage.all().first { $0.interfaceIndex == index && $0.address == address }
        }
        if let existing = try entry() {
            if existing.isPermanent { return existing.linkAddress }
            try? send { NetlinkRequest.forgetNeighbour(index: index, interface: interface, address: address, sequence: $0) }
        }
        try send { NetlinkRequest.resolveNeighbour(index: index, interface: interface, address: address, sequence: $0) }
        for _ in 0..<max(1, Int(wait / 0.05)) {
            usleep(50_000)
            if let e = try entry(), e.isReachable { return e.linkAddress }
        }
        return nil
    }

    /// Writes `value` to a sysctl under /proc/sys/net, recording the value it had.
    public func setSysctl(_ path: String, to value: String) throws {
        let previous = try Self.readSysctl(path)
        guard previous != value else { return }
        try record(.sysctl(path: path, previous: previous))
        try Self.writeSysctl(path, value)
    }

    /// `setSysctl` for a setting that may not exist on this kernel (IPv6 compiled out or disabled at
    /// boot): then there is nothing to change.
    public func setSysctlIfPresent(_ path: String, to value: String) throws {
        guard access(path, F_OK) == 0 else { return }
        try setSysctl(path, to: value)
    }

    /// Records a sysctl's value without changing it, so that undo writes it back: for values the
    /// kernel changes as a side effect of another write (`enableIPv6Forwarding`).
    public func recordSysctl(_ path: String) throws {
        guard access(path, F_OK) == 0 else { return }
        try record(.sysctl(path: path, previous: try Self.readSysctl(path)))
    }

    /// Turns on IPv6 forwarding, which Linux only has host-wide in effect
    /// (`net.ipv6.conf.all.forwarding`; proxy NDP answers only on a forwarding interface). Writing it
    /// also writes `default` and every interface's `forwarding`: each is recorded first, so undo
    /// (newest first: `all` back, then each interface back) restores every one exactly. With
    /// forwarding on, an interface ignores router advertisements unless its `accept_ra` is 2: each
    /// interface with `accept_ra` 1 gets 2 (journaled too), so the host keeps its RA-learned routes.
    /// Nothing is changed when forwarding is on already. `skip`: our own device.
    public func enableIPv6Forwarding(except skip: String) throws {
        let all = Self.ipv6ConfPath("all", "forwarding")
        guard access(all, F_OK) == 0 else { throw NetlinkError.callFailed(call: "IPv6 forwarding (IPv6 is off)", errno: ENOENT) }
        guard try Self.readSysctl(all) != "1" else { return }
        let names = Self.ipv6ConfNames().filter { $0 != "all" && $0 != skip }
        for name in names { try recordSysctl(Self.ipv6ConfPath(name, "forwarding")) }
        for name in names where name != "default" && name != "lo" {
            let acceptRA = Self.ipv6ConfPath(name, "accept_ra")
            if (try? Self.readSysctl(acceptRA)) == "1" { try setSysctl(acceptRA, to: "2") }
        }
        try setSysctl(all, to: "1")
    }

    /// The entries of /proc/sys/net/ipv6/conf: `all`, `default` and one per interface.
    static func ipv6ConfNames() -> [String] {
        guard let dir = opendir("/proc/sys/net/ipv6/conf") else { return [] }
        defer { closedir(dir) }
        var names: [String] = []
        while let entry = readdir(dir) {
            let name = withUnsafeBytes(of: entry.pointee.d_name) { raw in
                String(decoding: raw.prefix { $0 != 0 }, as: UTF8.self)
            }
            if name != "." && name != ".." { names.append(name) }
        }
        return names.sorted()
    }

    /// The sysctl file of a per-interface IPv6 neighbour setting: `net.ipv6.neigh.eth0.proxy_delay`.
    public static func ipv6NeighPath(_ interface: String, _ key: String) -> String {
        "/proc/sys/net/ipv6/neigh/\(interface)/\(key)"
    }

    /// The sysctl file of a per-interface IPv6 setting: `net.ipv6.conf.tun0.disable_ipv6`.
    public static func ipv6ConfPath(_ interface: String, _ key: String) -> String {
        "/proc/sys/net/ipv6/conf/\(interface)/\(key)"
    }

    // MARK: - Undo

    /// Undoes every recorded change, newest first, then removes the state file. Returns what could not
    /// be undone (already gone counts as undone).
    @discardableResult
    public func undoAll() -> [String] {
        var problems: [String] = []
        for change in journal.undoOrder {
            do {
                try undo(change)
            } catch let error as NetlinkError where error.isAlreadyGone {
                // Gone with its device, or removed by hand: nothing to do.
            } catch {
                problems.append("\(error)")
            }
            journal.forget(change)
        }
        unlink(stateFile)
        return problems
    }

    /// Undoes what a run that did not stop cleanly left in the state file. Returns the changes it
    /// found and what could not be undone.
    public func cleanLeftovers() -> (found: [NetworkChange], problems: [String]) {
        guard let text = Self.readFile(stateFile) else { return ([], []) }
        let (leftover, rejected) = UndoJournal.parse(text)
        journal = leftover
        var problems = rejected.map { "ignored a line of \(stateFile) that is not a change: \($0)" }
        let found = leftover.changes
        problems += undoAll()
        return (found, problems)
    }

    private func undo(_ change: NetworkChange) throws {
        switch change {
        case .link(let name):
            guard (try? Self.index(of: name)) != nil else { return }
            try send { NetlinkRequest.deleteLink(name: name, sequence: $0) }
        case .address(let interface, let prefix):
            let index = try Self.index(of: interface)
            try send { NetlinkRequest.address(add: false, index: index, interface: interface, prefix: prefix, sequence: $0) }
        case .route(let interface, let destination):
            let index = try Self.index(of: interface)
            try send { NetlinkRequest.route(add: false, index: index, interface: interface, destination: destination, sequence: $0) }
        case .proxyNeighbour(let interface, let address):
            let index = try Self.index(of: interface)
            try send {
                NetlinkRequest.proxyNeighbour(add: false, index: index, interface: interface, address: address, sequence: $0)
            }
        case .sysctl(let path, let previous):
            // A per-interface sysctl vanishes with its interface.
            guard access(path, F_OK) == 0 else { return }
            try Self.writeSysctl(path, previous)
        }
    }

    // MARK: - Plumbing

    private func change(_ change: NetworkChange, _ make: (UInt32) -> NetlinkRequest) throws {
        let isNew = !journal.changes.contains(change)
        try record(change)
        do {
            try send(make)
        } catch {
            // Not made (EEXIST: someone else's): never undo it. Unless we made it before: then the
            // record is ours and stays.
            if isNew {
                journal.forget(change)
                try? save()
            }
            throw error
        }
    }

    private func record(_ change: NetworkChange) throws {
        journal.record(change)
        try save()
    }

    private func send(_ make: (UInt32) -> NetlinkRequest) throws {
        sequence &+= 1
        let request = make(sequence)
        let socket = try NetlinkSocket()
        defer { socket.close() }
        try socket.acknowledged(request, sequence: sequence)
    }

    /// Writes the journal to a temporary file and renames it over the state file: a crash leaves the
    /// old or the new journal, never half of one.
    private func save() throws {
        if journal.isEmpty {
            unlink(stateFile)
            return
        }
        if let slash = stateFile.lastIndex(of: "/"), slash != stateFile.startIndex {
            // The state directory may not exist yet on a first run; EEXIST is the usual answer.
            mkdir(String(stateFile[..<slash]), 0o700)
        }
        let temporary = stateFile + ".tmp"
        let fd = open(temporary, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o600)
        guard fd >= 0 else { throw NetlinkError.callFailed(call: "open(\(temporary))", errno: errno) }
        let bytes = Array(journal.text.utf8)
        let written = bytes.withUnsafeBytes { write(fd, $0.baseAddress, $0.count) }
        let writeError = errno
        close(fd)
        guard written == bytes.count else { throw NetlinkError.callFailed(call: "write(\(temporary))", errno: writeError) }
        guard rename(temporary, stateFile) == 0 else { throw NetlinkError.callFailed(call: "rename(\(stateFile))", errno: errno) }
    }

    static func index(of interface: String) throws -> UInt32 {
        let index = if_nametoindex(interface)
        guard index != 0 else { throw NetlinkError.noSuchInterface(interface) }
        return index
    }

    /// The sysctl file of a per-interface IPv4 setting: `net.ipv4.conf.eth0.forwarding`.
    public static func ipv4ConfPath(_ interface: String, _ key: String) -> String {
        "/proc/sys/net/ipv4/conf/\(interface)/\(key)"
    }

    /// The sysctl file of a per-interface IPv4 neighbour setting: `net.ipv4.neigh.eth0.proxy_delay`.
    public static func ipv4NeighPath(_ interface: String, _ key: String) -> String {
        "/proc/sys/net/ipv4/neigh/\(interface)/\(key)"
    }

    static func readSysctl(_ path: String) throws -> String {
        guard let text = readFile(path) else { throw NetlinkError.callFailed(call: "read \(path)", errno: errno) }
        return text.trimmingSpaces
    }

    static func writeSysctl(_ path: String, _ value: String) throws {
        let fd = open(path, O_WRONLY | O_CLOEXEC)
        guard fd >= 0 else { throw NetlinkError.callFailed(call: "open(\(path))", errno: errno) }
        defer { close(fd) }
        let bytes = Array((value + "\n").utf8)
        guard bytes.withUnsafeBytes({ write(fd, $0.baseAddress, $0.count) }) == bytes.count else {
            throw NetlinkError.callFailed(call: "write \(value) to \(path)", errno: errno)
        }
    }

    static func readFile(_ path: String) -> String? {
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { return nil }
        defer { close(fd) }
        var result: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 4096)
        while true {
            let n = chunk.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
            if n < 0 && errno == EINTR { continue }
            guard n > 0 else { break }
            result += chunk.prefix(n)
            // A state file is a few lines; refuse to read megabytes someone put there.
            if result.count > 1 << 20 { return nil }
        }
        return String(decoding: result, as: UTF8.self)
    }
}

extension String {
    fileprivate var trimmingSpaces: String {
        String(self.drop { $0.isWhitespace }.reversed().drop { $0.isWhitespace }.reversed())
    }
}
