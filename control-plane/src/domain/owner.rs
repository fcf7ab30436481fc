//! Who a rule belongs to. Storage files rows under it, the snapshot keys rules by it, and the
//! API shows it; none of them defines it: it is [`certbind_shared::identity::Owner`], the type
//! the decision reads too.

pub use certbind_shared::identity::Owner;
