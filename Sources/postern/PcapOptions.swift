import ArgumentParser
import PosternPcap

/// `--pcap FILE`, `--pcap-max-bytes`, `--pcap-files` (server and mediator; `pcap`, `pcap-max-bytes`,
/// `pcap-files` in the config file): record what the relayed sockets carry into a pcap file.
struct PcapOptions: ParsableArguments {
    @Option(help: "Record what the relayed sockets carry into this pcap file (packets made up from the bytes).")
    var pcap: String?

    @Option(help: "With --pcap: rotate the file when it reaches this many bytes (default 104857600).")
    var pcapMaxBytes: Int?

    @Option(help: "With --pcap: keep at most this many files, FILE, FILE.1, ... (default 5).")
    var pcapFiles: Int?

    static let configKeys: Set<String> = ["pcap", "pcap-max-bytes", "pcap-files"]

    /// The settings from the flags, else the config file; nil without a file.
    func settings(_ section: ConfigFile.Section?) throws -> PcapSettings? {
        guard let path = try pcap ?? section?.string("pcap") else {
            if pcapMaxBytes != nil || pcapFiles != nil { throw ValidationError("--pcap-max-bytes and --pcap-files need --pcap FILE") }
            return nil
        }
        var settings = PcapSettings(path: path)
        if let n = try pcapMaxBytes ?? section?.int("pcap-max-bytes") {
            guard n >= 1024 else { throw ValidationError("--pcap-max-bytes must be at least 1024") }
            settings.maxBytes = n
        }
        if let n = try pcapFiles ?? section?.int("pcap-files") {
            guard (1...1000).contains(n) else { throw ValidationError("--pcap-files must be 1-1000") }
            settings.maxFiles = n
        }
        return settings
    }
}
