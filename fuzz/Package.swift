// swift-tools-version: 6.1
// libFuzzer targets for Subgate's own parsers and header rules (fuzz/README.md).
//
// A package of its own, so that the main package's `swift build --build-tests` never sees an
// executable that only links with `-sanitize=fuzzer` (libFuzzer supplies `main`). Built only
// by scripts/fuzz.sh (release, libFuzzer coverage and AddressSanitizer; see its `build`).
import PackageDescription

let package = Package(
    name: "subgate-fuzz",
    platforms: [.macOS(.v15)],
    dependencies: [
        // The product under test, by path: the fuzzers always build the checkout they sit in.
        .package(name: "subgate", path: ".."),
        // The same versions the main package resolves (its own requirements).
        .package(url: "https://github.com/apple/swift-nio", from: "2.101.2"),
        .package(url: "https://github.com/apple/swift-crypto", from: "4.5.2"),
    ],
    targets: [
        // Invariant checks and input helpers shared by the targets.
        .target(name: "FuzzSupport"),
        // Raw bytes → NIO's HTTP/1 request decoder (as the proxy configures it) → the head rules
        // and the header rewrites of both directions.
        .executableTarget(
            name: "fuzz-request-head",
            dependencies: [
                "FuzzSupport",
                .product(name: "SubgateCore", package: "subgate"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
                .product(name: "NIOEmbedded", package: "swift-nio"),
            ]
        ),
        // Header fields → the token (and Crovver tenant) lookup, the token hash, JSON quoting.
        .executableTarget(
            name: "fuzz-token",
            dependencies: [
                "FuzzSupport",
                .product(name: "SubgateCore", package: "subgate"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
                .product(name: "Crypto", package: "swift-crypto"),
            ]
        ),
        // Bytes → the configuration parser (file text and SUBGATE_* environment), and the
        // effective settings rendered back into a file.
        .executableTarget(
            name: "fuzz-config",
            dependencies: [
                "FuzzSupport",
                .product(name: "SubgateCore", package: "subgate"),
            ]
        ),
    ]
)
