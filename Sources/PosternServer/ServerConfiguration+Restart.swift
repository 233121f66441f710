extension ServerConfiguration {
    /// The settings a reload read that differ from the running ones but that only a restart applies
    /// (README, "Reloading": a reload applies forwards and SOCKS5 listeners), named as the config
    /// file names them. A reload that changed `keepalive` answered "unchanged" for every forward and
    /// said nothing else, so whoever edited the file believed the new value was in force.
    public func settingsNeedingRestart(running: ServerConfiguration) -> [String] {
        var changed: [String] = []
        func check(_ key: String, _ differs: Bool) { if differs { changed.append(key) } }
        check("listen", listen != running.listen)
        check("secret-file", secrets != running.secrets)
        check("admin", admin != running.admin)
        check("admin-token-file", adminToken != running.adminToken)
        check("admin-tls", (adminTransport == nil) != (running.adminTransport == nil))
        check("keepalive", settings.keepaliveInterval != running.settings.keepaliveInterval)
        check("dead-timeout", settings.deadTimeout != running.settings.deadTimeout)
        check("max-session-buffer", settings.maxBufferedBytes != running.settings.maxBufferedBytes)
        // The transport's name carries TLS or plain TCP and the key's fingerprint.
        check("tls-cert/tls-key/insecure/mediator-ca", transport.name != running.transport.name)
        check("udp-keepalive", udpChannel != running.udpChannel || udpChannelEnabled != running.udpChannelEnabled)
        check("udp-max-flows", udpMaxFlows != running.udpMaxFlows)
        check("mediator-connects/connect-queue-timeout", connectAdmission != running.connectAdmission)
        check("max-mediators", maxMediators != running.maxMediators)
        check("threads", threads != running.threads)
        check("name-probe-timeout", nameProbeTimeout != running.nameProbeTimeout)
        check("metrics", metrics != running.metrics)
        check("pcap", pcap != running.pcap)
        check("tun", tunEnabled != running.tunEnabled)
        check("tun-mtu", tunMTU != running.tunMTU)
        check("tun-offload", tunOffload != running.tunOffload)
        return changed
    }
}
