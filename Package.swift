// swift-tools-version: 6.0
// Strata: a multi-tenant event store server. docs/architecture.md describes
// the modules and how they depend on each other.
import PackageDescription

let package = Package(
    name: "Strata",
    platforms: [.macOS(.v15)],
    products: [
        .executable(name: "strata", targets: ["strata"]),
        .library(name: "StrataLMDB", targets: ["StrataLMDB"]),
        .library(name: "StrataStorage", targets: ["StrataStorage"]),
        .library(name: "StrataServer", targets: ["StrataServer"]),
        .library(name: "StrataClient", targets: ["StrataClient"]),
        .library(name: "StrataProjections", targets: ["StrataProjections"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.8.2"),
        .package(url: "https://github.com/HdrHistogram/hdrhistogram-swift", from: "0.2.0"),
        .package(url: "https://github.com/apple/swift-protobuf", from: "1.39.0"),
        .package(url: "https://github.com/jpsim/Yams", from: "6.2.2"),
        // SHA-256 for API key hashes and secure random key material.
        .package(url: "https://github.com/apple/swift-crypto", "3.12.3" ..< "4.0.0"),
        // Metrics (the API), their Prometheus text exposition, and structured logs.
        // None of them pulls in SwiftNIO.
        .package(url: "https://github.com/apple/swift-metrics", from: "2.13.0"),
        .package(url: "https://github.com/swift-server/swift-prometheus", from: "2.4.1"),
        .package(url: "https://github.com/apple/swift-log", from: "1.16.2"),
    ],
    targets: [
        // LMDB, linked from the system (Debian: liblmdb-dev).
        .systemLibrary(
            name: "CLMDB",
            pkgConfig: "lmdb",
            providers: [.apt(["liblmdb-dev"])]
        ),
        // Lua 5.4, linked from the system (Debian: liblua5.4-dev). The shim
        // header turns Lua's function-like macros into static inline functions
        // Swift can call.
        .systemLibrary(
            name: "CLua",
            pkgConfig: "lua5.4",
            providers: [.apt(["liblua5.4-dev"])]
        ),
        // The shared vocabulary: a lock ThreadSanitizer can see (Locked),
        // revisions, time-ordered ids, durations and timestamps.
        .target(name: "StrataSupport"),
        // The only importer of CLMDB: environments, non-copyable transactions
        // that exist only inside closures, cursors, named error codes.
        .target(
            name: "StrataLMDB",
            dependencies: ["CLMDB", "StrataSupport"]
        ),
        .target(
            name: "StrataStorage",
            dependencies: ["StrataLMDB", "StrataSupport", .product(name: "Logging", package: "swift-log")]
        ),
        // The Lua sandbox and the projection engine: scripts run against a
        // tenant's events, state and checkpoints commit with the store's writer.
        .target(
            name: "StrataProjections",
            dependencies: ["CLua", "StrataStorage", "StrataSupport"]
        ),
        // swift-protobuf code generated from proto/ by scripts/generate-proto.sh.
        // Committed; never edited by hand.
        .target(
            name: "StrataProto",
            dependencies: [.product(name: "SwiftProtobuf", package: "swift-protobuf")]
        ),
        // Frames, the frame codec, status codes and errors, method names: no
        // sockets, no storage. Shared by the server and the client.
        .target(
            name: "StrataWire",
            dependencies: ["StrataProto", "StrataSupport", .product(name: "SwiftProtobuf", package: "swift-protobuf")]
        ),
        // The Swift client: async/await, AsyncSequence. Never links LMDB or Lua.
        .target(
            name: "StrataClient",
            dependencies: ["StrataWire", "StrataProto", "StrataSupport", .product(name: "SwiftProtobuf", package: "swift-protobuf")]
        ),
        // The Dispatch/POSIX socket server, connections, calls, router and services.
        .target(
            name: "StrataServer",
            dependencies: ["StrataWire", "StrataProto", "StrataStorage", "StrataProjections", "StrataSupport",
                           .product(name: "SwiftProtobuf", package: "swift-protobuf"),
                           .product(name: "Yams", package: "Yams"),
                           .product(name: "Crypto", package: "swift-crypto"),
                           .product(name: "CoreMetrics", package: "swift-metrics"),
                           .product(name: "Prometheus", package: "swift-prometheus"),
                           .product(name: "Logging", package: "swift-log")]
        ),
        // The protocol conformance runner: its own framing on raw sockets
        // (never StrataWire or StrataClient), cases from proto/conformance.
        .target(
            name: "StrataConformance",
            dependencies: ["StrataProto", .product(name: "SwiftProtobuf", package: "swift-protobuf")]
        ),
        // The fuzz targets (docs/reliability.md): the decoders and state
        // machines fed arbitrary bytes, with invariants checked.
        .target(
            name: "StrataFuzzing",
            dependencies: ["StrataWire", "StrataProto", "StrataServer", "StrataClient", "StrataStorage",
                           .product(name: "SwiftProtobuf", package: "swift-protobuf")]
        ),
        // libFuzzer's driver for them (scripts/fuzz.sh builds it with
        // -sanitize=fuzzer); a normal build replays saved inputs.
        .target(name: "CFuzzerDriver"),
        .executableTarget(
            name: "strata-fuzz",
            dependencies: ["StrataFuzzing", "CFuzzerDriver"]
        ),
        .executableTarget(
            name: "strata",
            dependencies: [
                "StrataStorage", "StrataServer", "StrataClient", "StrataProjections", "StrataConformance", "StrataSupport",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "Histogram", package: "hdrhistogram-swift"),
                .product(name: "Logging", package: "swift-log"),
            ]
        ),
        // Shared by the test targets: a deterministic generator and raw
        // loopback sockets (in Tests/, never linked into the product).
        .target(name: "StrataTestSupport", path: "Tests/StrataTestSupport"),
        // Raw frame connections for protocol-level tests (server and client).
        .target(name: "StrataProtocolTestSupport",
                dependencies: ["StrataWire", "StrataProto", "StrataTestSupport", .product(name: "SwiftProtobuf", package: "swift-protobuf")],
                path: "Tests/StrataProtocolTestSupport"),
        .testTarget(
            name: "StrataLMDBTests",
            dependencies: ["StrataLMDB", "StrataTestSupport"]
        ),
        .testTarget(
            name: "StrataStorageTests",
            dependencies: ["StrataStorage", "StrataLMDB", "StrataSupport", "StrataTestSupport"]
        ),
        .testTarget(
            name: "StrataServerTests",
            dependencies: ["StrataServer", "StrataClient", "StrataWire", "StrataProto", "StrataStorage", "StrataProjections",
                           "StrataConformance", "StrataSupport", "StrataTestSupport", "StrataProtocolTestSupport",
                           .product(name: "SwiftProtobuf", package: "swift-protobuf"), .product(name: "Logging", package: "swift-log")]
        ),
        // The client on its own: codecs, state machine, and a scripted fake server.
        .testTarget(
            name: "StrataClientTests",
            dependencies: ["StrataClient", "StrataWire", "StrataProto", "StrataTestSupport", "StrataProtocolTestSupport",
                           .product(name: "SwiftProtobuf", package: "swift-protobuf")]
        ),
        .testTarget(
            name: "StrataWireTests",
            dependencies: ["StrataWire", "StrataProto", "StrataSupport", "StrataTestSupport", .product(name: "SwiftProtobuf", package: "swift-protobuf")]
        ),
        // Runs the built `strata` binary (serve and the client commands) as a user would.
        .testTarget(
            name: "StrataCLITests",
            dependencies: ["strata", "StrataClient", "StrataWire", "StrataProto", "StrataTestSupport",
                           .product(name: "Histogram", package: "hdrhistogram-swift")]
        ),
        .testTarget(
            name: "StrataProjectionsTests",
            dependencies: ["StrataProjections", "StrataStorage", "StrataTestSupport"]
        ),
        .testTarget(
            name: "StrataFuzzingTests",
            dependencies: ["StrataFuzzing"],
            resources: [.copy("corpus")]
        ),
        .testTarget(
            name: "CLuaTests",
            dependencies: ["CLua"]
        ),
    ],
    swiftLanguageModes: [.v6]
)
