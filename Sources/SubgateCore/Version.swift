public enum SubgateVersion { public static let string = "0.1.0" }
