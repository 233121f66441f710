import ArgumentParser

/// `--tun-offload on|off` (config key `tun-offload`, the same words), server and mediator alike: whether
/// TUN mode's devices ask the kernel for IFF_VNET_HDR and offloads (`TunDevice`). "off" is the
/// fallback a kernel without them gets anyway, for an operator who wants to rule offloads out.
enum TunOffloadOption {
    static let help = ArgumentHelp(
        "TUN mode's devices with kernel offloads (on, the default: 64 KB super-packets cut and merged by Postern) or off (one packet per read and write).",
        valueName: "on|off")

    /// The setting from the option or the config file; nil when neither gives one.
    static func parse(_ text: String?) throws -> Bool? {
        guard let text else { return nil }
        switch text {
        case "on": return true
        case "off": return false
        default: throw ValidationError("--tun-offload '\(text)': give on or off")
        }
    }
}
