// swift-tools-version:6.2
// Layers, bottom up (see docs/architecture.md):
//   PosternWire (pure codec) -> PosternCore (pure state machines) -> PosternTunnel (thin NIO handlers)
//   -> PosternServer / PosternMediator (services) -> postern (command line).
// Linux specifics sit in their own modules (PosternNetlink over libmnl); only they import C modules.
import PackageDescription

// The I/O layers keep every piece of a session's mutable state on one event loop (see
// docs/architecture.md) and are compiled in Swift 5 mode: NIO handlers are loop-confined, non-Sendable
// classes by design. The pure layers (wire, core, netlink) use full Swift 6 checking.
// Warnings are errors in every project target (never in dependencies): a warning left standing is
// either a bug or noise that hides the next one.
let ioSettings: [SwiftSetting] = [.swiftLanguageMode(.v5), .treatAllWarnings(as: .error)]
let pureSettings: [SwiftSetting] = [.treatAllWarnings(as: .error)]

let package = Package(
    name: "postern",
    platforms: [.macOS(.v13)],
    products: [
        .executable(name: "postern", targets: ["postern"])
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-nio.git", from: "2.101.2"),
        .package(url: "https://github.com/apple/swift-argument-parser.git", from: "1.8.2"),
        .package(url: "https://github.com/apple/swift-log.git", from: "1.16.2"),
        .package(url: "https://github.com/apple/swift-crypto.git", from: "3.12.3"),
        .package(url: "https://github.com/LebJe/TOMLKit.git", from: "0.6.0"),
        .package(url: "https://github.com/apple/swift-nio-ssl.git", from: "2.37.6"),
        .package(url: "https://github.com/apple/swift-certificates.git", from: "1.21.1"),
        .package(url: "https://github.com/apple/swift-metrics.git", from: "2.13.0"),
        .package(url: "https://github.com/swift-server/swift-prometheus.git", from: "2.4.1"),
        .package(url: "https://github.com/apple/swift-atomics.git", from: "1.2.0"),
    ],
    targets: [
        .systemLibrary(
            name: "CMNL",
            pkgConfig: "libmnl",
            providers: [.apt(["libmnl-dev"])]
        ),
        .target(name: "CPosternShims", dependencies: ["CMNL"]),
        .target(
            name: "PosternWire",
            dependencies: [.product(name: "NIOCore", package: "swift-nio")],
            swiftSettings: pureSettings
        ),
        .target(
            name: "PosternCore",
            dependencies: [
                "PosternWire",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "Crypto", package: "swift-crypto"),
            ],
            swiftSettings: pureSettings
        ),
        // The packet device seam (tun device, raw socket, pcap file later): pure Swift 6 over NIOCore.
        .target(
            name: "PosternPacket",
            dependencies: ["PosternWire", .product(name: "NIOCore", package: "swift-nio")],
            swiftSettings: pureSettings
        ),
        // SOCKS5 messages (RFC 1928, RFC 1929) and the server's handshake: pure, like PosternWire.
        .target(
            name: "PosternSOCKS",
            dependencies: ["PosternWire", "PosternCore", .product(name: "NIOCore", package: "swift-nio")],
            swiftSettings: pureSettings
        ),
        .target(
            name: "PosternNetlink",
            dependencies: ["CMNL", "CPosternShims", "PosternWire"],
            swiftSettings: pureSettings
        ),
        .target(
            name: "PosternTunnel",
            dependencies: [
                "PosternWire", "PosternCore",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "Atomics", package: "swift-atomics"),
            ],
            swiftSettings: ioSettings
        ),
        .target(
            name: "PosternTLS",
            dependencies: [
                "PosternTunnel", "PosternCore",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOTLS", package: "swift-nio"),
                .product(name: "NIOConcurrencyHelpers", package: "swift-nio"),
                .product(name: "NIOSSL", package: "swift-nio-ssl"),
                .product(name: "X509", package: "swift-certificates"),
                .product(name: "Crypto", package: "swift-crypto"),
                .product(name: "Logging", package: "swift-log"),
            ],
            swiftSettings: ioSettings
        ),
        // TUN mode's I/O: the tun device (NIO-read descriptor) and the packet relay between it and a
        // session's paths. Only this module opens /dev/net/tun.
        .target(
            name: "PosternTUN",
            dependencies: [
                "CPosternShims", "PosternPacket", "PosternNetlink", "PosternTunnel", "PosternWire",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
            ],
            swiftSettings: ioSettings
        ),
        .target(
            name: "PosternServer",
            dependencies: [
                "PosternTunnel", "PosternCore", "PosternWire", "PosternSOCKS", "PosternCapture", "PosternPcap", "PosternReplay",
                "PosternTUN", "PosternPacket", "PosternNetlink",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
                .product(name: "Crypto", package: "swift-crypto"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "Metrics", package: "swift-metrics"),
                .product(name: "Prometheus", package: "swift-prometheus"),
                .product(name: "Atomics", package: "swift-atomics"),
                .product(name: "NIOConcurrencyHelpers", package: "swift-nio"),
            ],
            swiftSettings: ioSettings
        ),
        .target(
            name: "PosternMediator",
            dependencies: [
                "PosternTunnel", "PosternCore", "PosternWire", "PosternNetlink", "PosternPcap", "PosternReplay",
                "PosternTUN", "PosternPacket", "CPosternShims",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "Logging", package: "swift-log"),
            ],
            swiftSettings: ioSettings
        ),
        .executableTarget(
            name: "postern",
            dependencies: [
                "PosternServer", "PosternMediator", "PosternTLS", "PosternCore", "PosternWire", "PosternSOCKS",
                "PosternCapture", "PosternPcap", "PosternReplay", "PosternAdminClient", "PosternBuildInfo",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOSSL", package: "swift-nio-ssl"),
                .product(name: "TOMLKit", package: "TOMLKit"),
                "CPosternShims",  // HeapTrimmer: mallopt and malloc_trim
            ],
            swiftSettings: ioSettings
        ),
        .testTarget(
            name: "PosternWireTests",
            dependencies: ["PosternWire", .product(name: "NIOCore", package: "swift-nio")],
            swiftSettings: pureSettings
        ),
        .testTarget(
            name: "PosternCoreTests",
            dependencies: [
                "PosternCore", "PosternWire", .product(name: "NIOCore", package: "swift-nio"),
                // UDPChannelCipherTests compare the cipher's BoringSSL calls with swift-crypto's ChaChaPoly.
                .product(name: "Crypto", package: "swift-crypto"),
            ],
            swiftSettings: pureSettings
        ),
        .testTarget(
            name: "PosternServerTests",
            dependencies: [
                "PosternServer", "PosternCore", "PosternWire", "PosternTunnel",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOEmbedded", package: "swift-nio"),
                // ForwardCapturesTests read the captures back.
                "PosternPcap",
                // MediatorLinkTunStatsTests read TUN mode's counters.
                "PosternPacket",
                .product(name: "NIOHTTP1", package: "swift-nio"),
                .product(name: "Logging", package: "swift-log"),
                // ServerThreadsTests connect real mediators to a server with several loops.
                "PosternMediator",
                .product(name: "NIOPosix", package: "swift-nio"),
                // ServerThreadsTests add a SOCKS5 listener, which keeps sessions on the control loop.
                "PosternSOCKS",
            ],
            swiftSettings: pureSettings
        ),
        .testTarget(
            name: "PosternTLSTests",
            dependencies: [
                "PosternTLS", "PosternTunnel", "PosternCore",
                .product(name: "NIOSSL", package: "swift-nio-ssl"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
            ],
            swiftSettings: ioSettings
        ),
        .testTarget(
            name: "PosternTunnelTests",
            dependencies: [
                "PosternTunnel", "PosternCore", "PosternWire",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOEmbedded", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "Logging", package: "swift-log"),
            ],
            swiftSettings: ioSettings
        ),
        .testTarget(
            name: "PosternMediatorTests",
            dependencies: [
                "PosternMediator", "PosternTunnel", "PosternCore", "PosternWire",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOConcurrencyHelpers", package: "swift-nio"),
                .product(name: "Logging", package: "swift-log"),
            ],
            swiftSettings: ioSettings
        ),
        .testTarget(
            name: "PosternPacketTests",
            dependencies: ["PosternPacket", "PosternWire", .product(name: "NIOCore", package: "swift-nio")],
            swiftSettings: pureSettings
        ),
        .testTarget(
            name: "PosternDatagramTests",
            dependencies: [
                "PosternTunnel", "PosternServer", "PosternMediator", "PosternCore", "PosternWire",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOEmbedded", package: "swift-nio"),
                .product(name: "Logging", package: "swift-log"),
            ],
            swiftSettings: ioSettings
        ),
        .testTarget(
            name: "PosternSOCKSTests",
            dependencies: ["PosternSOCKS", "PosternWire", .product(name: "NIOCore", package: "swift-nio")],
            swiftSettings: pureSettings
        ),
        .testTarget(
            name: "PosternNetlinkTests",
            dependencies: [
                "PosternNetlink", "PosternWire", "PosternTUN", "PosternPacket",
                .product(name: "NIOCore", package: "swift-nio"), .product(name: "NIOPosix", package: "swift-nio"),
            ],
            swiftSettings: pureSettings
        ),
        // Capture files (issue 12): libpcap reads them (CPcap, PosternPcap); PosternCapture is the pure
        // decoding above it (link layers, IP, fragments, flows); PosternReplay drives flows through a tunnel.
        .systemLibrary(
            name: "CPcap",
            pkgConfig: "libpcap",
            providers: [.apt(["libpcap-dev"])]
        ),
        .target(
            name: "PosternCapture",
            dependencies: ["PosternWire"],
            swiftSettings: pureSettings
        ),
        .target(
            name: "PosternPcap",
            dependencies: ["CPcap", "PosternCapture"],
            swiftSettings: pureSettings
        ),
        .target(
            name: "PosternReplay",
            dependencies: [
                "PosternCapture", "PosternPcap", "PosternWire",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
            ],
            swiftSettings: ioSettings
        ),
        .testTarget(
            name: "PosternReplayTests",
            dependencies: [
                "PosternReplay", "PosternCapture", "PosternPcap", "PosternWire",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOEmbedded", package: "swift-nio"),
            ],
            swiftSettings: ioSettings
        ),
        .testTarget(
            name: "PosternCaptureTests",
            dependencies: [
                "PosternCapture", "PosternPcap", "PosternWire",
                // The real MSS clamp of TUN mode, which the replay comparison must accept exactly.
                "PosternPacket", .product(name: "NIOCore", package: "swift-nio"),
            ],
            swiftSettings: pureSettings
        ),
        // `postern ctl`'s client of the admin API (NIO's HTTP/1.1 client codec, TLS from PosternTLS).
        .target(
            name: "PosternAdminClient",
            dependencies: [
                "PosternTLS",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
            ],
            swiftSettings: ioSettings
        ),
        // The git commit of the build, for `postern --version` (written by the plugin at build time).
        .plugin(name: "BuildInfoPlugin", capability: .buildTool()),
        .target(name: "PosternBuildInfo", swiftSettings: pureSettings, plugins: ["BuildInfoPlugin"]),
        .testTarget(name: "PosternBuildInfoTests", dependencies: ["PosternBuildInfo"], swiftSettings: pureSettings),
        .testTarget(
            name: "PosternAdminClientTests",
            dependencies: [
                "PosternAdminClient", "PosternServer", "PosternTLS", "PosternCore",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
                .product(name: "Logging", package: "swift-log"),
            ],
            swiftSettings: ioSettings
        ),
        // The command line itself (`@testable import postern`): README's config reference against its keys.
        .testTarget(name: "PosternCommandTests", dependencies: ["postern"], swiftSettings: ioSettings),
    ]
)
