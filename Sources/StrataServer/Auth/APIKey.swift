import Crypto
import Foundation

/// The text form of an API key: `strata_<id>_<secret>`. The id (16 hex
/// digits) is public: it names the key in listings, logs and revocation.
/// The secret (43 base64url characters, 256 random bits) is shown once at
/// creation; the server keeps only its SHA-256. A plain hash is enough
/// here, unlike for passwords: 256 random bits cannot be guessed, so there
/// is nothing for a slow hash to protect.
public struct APIKey: Sendable, Equatable {
    public let id: String
    public let secret: String

    static let prefix = "strata_"

    public var text: String { Self.prefix + id + "_" + secret }

    /// A new key from the system's secure random generator.
    public static func generate() -> APIKey {
        var generator = SystemRandomNumberGenerator()  // getrandom(2) on Linux
        let idBytes = (0..<8).map { _ in UInt8.random(in: 0...255, using: &generator) }
        let secretBytes = (0..<32).map { _ in UInt8.random(in: 0...255, using: &generator) }
        return APIKey(id: idBytes.map { String(format: "%02x", $0) }.joined(), secret: base64URL(secretBytes))
    }

    /// Parses `strata_<id>_<secret>`; nil for anything else.
    public init?(parsing text: String) {
        guard text.hasPrefix(Self.prefix) else { return nil }
        let rest = text.dropFirst(Self.prefix.count)
        guard let separator = rest.firstIndex(of: "_") else { return nil }
        let id = rest[..<separator], secret = rest[rest.index(after: separator)...]
        guard id.count == 16, id.allSatisfy({ $0.isHexDigit && !$0.isUppercase }), !secret.isEmpty, secret.utf8.count <= 128 else {
            return nil
        }
        self.id = String(id)
        self.secret = String(secret)
    }

    init(id: String, secret: String) {
        self.id = id
        self.secret = secret
    }

    /// SHA-256 of the secret, as stored.
    public var secretHash: [UInt8] { Self.hash(secret) }

    static func hash(_ text: String) -> [UInt8] { Array(SHA256.hash(data: Data(text.utf8))) }

    /// Compares two digests in time independent of where they differ.
    static func constantTimeEqual(_ a: [UInt8], _ b: [UInt8]) -> Bool {
        guard a.count == b.count else { return false }
        var difference: UInt8 = 0
        for i in a.indices { difference |= a[i] ^ b[i] }
        return difference == 0
    }

    private static func base64URL(_ bytes: [UInt8]) -> String {
        Data(bytes).base64EncodedString()
            .replacingOccurrences(of: "+", with: "-").replacingOccurrences(of: "/", with: "_")
            .replacingOccurrences(of: "=", with: "")
    }
}
