/// Tenant names: 1–63 characters of lowercase ASCII letters, digits and `-`,
/// not starting or ending with `-` (so a name is also a safe directory name
/// and DNS label).
public enum TenantName {
    public static let maxLength = 63

    public static func validate(_ name: String) throws(StorageError) {
        if name.isEmpty { throw .invalidTenantName(name: name, reason: "empty") }
        if name.utf8.count > maxLength {
            throw .invalidTenantName(name: name, reason: "longer than \(maxLength) characters")
        }
        for byte in name.utf8 {
            let allowed = (byte >= UInt8(ascii: "a") && byte <= UInt8(ascii: "z"))
                || (byte >= UInt8(ascii: "0") && byte <= UInt8(ascii: "9")) || byte == UInt8(ascii: "-")
            if !allowed {
                throw .invalidTenantName(name: name, reason: "only lowercase letters, digits and '-' are allowed")
            }
        }
        if name.hasPrefix("-") || name.hasSuffix("-") {
            throw .invalidTenantName(name: name, reason: "must not start or end with '-'")
        }
    }
}
