/// The Crochet gateway's fee model (seed 001, "Fee model"): a 4.9 % marketplace fee on
/// billable gateway charges; the seller receives 95.1 %. Amounts are integer micro-dollars
/// (`MicroDollars`).
///
/// The seed's own example table says $4.90 and $95.10 for a $1.00 call; those are the
/// percentages, not the amounts: $1.00 gross is a $0.049 fee and $0.951 to the seller
/// (SPEC §7).
public enum GatewayFee {
    /// The fee in thousandths: 4.9 %.
    public static let feePerMille = 49

    /// The marketplace fee on `gross`, rounded half up to the micro-dollar.
    public static func fee(grossMicros gross: Int) -> Int {
        MicroDollars.split(gross, feePerMille: Self.feePerMille).fee
    }

    /// What the seller receives of `gross`: the gross less the fee.
    public static func sellerShare(grossMicros gross: Int) -> Int {
        MicroDollars.split(gross, feePerMille: Self.feePerMille).seller
    }
}
