// swift-tools-version:5.4
// libFuzzer targets for Postern's pure layers: the frame decoder and the session state machines.
// Build and run them with tools/fuzz/run (see tools/fuzz/README.md); a plain `swift build` cannot link
// them, as their `main` is libFuzzer's.
//
// The pure modules are compiled here from symlinks to the main package's sources
// (Sources/PosternWire -> ../../../Sources/PosternWire), and the fuzz checks from symlinks to the unit
// tests' copies of them: the main package exports only the `postern`
// executable, so its library targets cannot be depended on by product, and SwiftPM refuses a target
// `path:` outside this package's root.
import PackageDescription

let package = Package(
    name: "postern-fuzz",
    dependencies: [
        .package(url: "https://github.com/apple/swift-nio.git", from: "2.101.2"),
        .package(url: "https://github.com/apple/swift-crypto.git", from: "3.12.3"),
    ],
    targets: [
        .target(
            name: "PosternWire",
            dependencies: [.product(name: "NIOCore", package: "swift-nio")]
        ),
        .target(
            name: "PosternCore",
            dependencies: [
                "PosternWire",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "Crypto", package: "swift-crypto"),
            ]
        ),
        // Each target's check lives with the unit tests that replay its corpus and past crashes
        // (Sources/FrameFuzz -> ../../../Tests/PosternWireTests/FrameFuzz, Sources/SessionFuzz ->
        // ../../../Tests/PosternCoreTests/SessionFuzz): one copy of the code.
        .target(
            name: "FrameFuzz",
            dependencies: ["PosternWire", .product(name: "NIOCore", package: "swift-nio")]
        ),
        .executableTarget(
            name: "FuzzFrameDecoder",
            dependencies: ["FrameFuzz"]
        ),
        .target(
            name: "SessionFuzz",
            dependencies: ["PosternCore", "PosternWire", .product(name: "NIOCore", package: "swift-nio")]
        ),
        .executableTarget(
            name: "FuzzSessionStateMachine",
            dependencies: ["SessionFuzz"]
        ),
    ]
)
