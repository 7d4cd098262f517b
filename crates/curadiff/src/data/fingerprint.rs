//! The content fingerprint of a training set: FNV-1a 64 over its shape, example ids, labels
//! and pixel bits, so that anything keyed by example ids (a subset file, a score file, a run
//! being resumed) can check it still refers to the same examples.

use super::images::ImageSet;

/// FNV-1a 64 of `bytes` continuing from state `h` (start with [`FNV_OFFSET`]).
pub fn fnv1a_extend(mut h: u64, bytes: &[u8]) -> u64 {
    for &b in bytes {
        h ^= b as u64;
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h
}

/// FNV-1a 64's initial state.
pub const FNV_OFFSET: u64 = 0xcbf2_9ce4_8422_2325;

/// FNV-1a 64 of `bytes` as 16 hex digits.
pub fn fnv1a(bytes: &[u8]) -> String {
    format!("{:016x}", fnv1a_extend(FNV_OFFSET, bytes))
}

/// The fingerprint of `set` as "fnv1a64:<16 hex digits>".
pub fn fingerprint(set: &ImageSet) -> String {
    let mut h = FNV_OFFSET;
    for d in [set.len(), set.channels, set.height, set.width] {
        h = fnv1a_extend(h, &(d as u64).to_le_bytes());
    }
    for &id in &set.ids {
        h = fnv1a_extend(h, &id.to_le_bytes());
    }
    for &l in &set.labels {
        h = fnv1a_extend(h, &l.to_le_bytes());
    }
    for &p in &set.pixels {
        h = fnv1a_extend(h, &p.to_bits().to_le_bytes());
    }
    format!("fnv1a64:{h:016x}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fnv1a_matches_the_published_test_vectors() {
        // From the FNV reference (Fowler, Noll, Vo): FNV-1a 64 of "" and "a", "foobar".
        assert_eq!(fnv1a(b""), "cbf29ce484222325");
        assert_eq!(fnv1a(b"a"), "af63dc4c8601ec8c");
        assert_eq!(fnv1a(b"foobar"), "85944171f73967e8");
    }

    #[test]
    fn the_fingerprint_sees_ids_labels_and_pixels() {
        let set = crate::data::images::tests::toy_set(&[3, 2]);
        let fp = fingerprint(&set);
        assert!(fp.starts_with("fnv1a64:") && fp.len() == 24, "{fp}");
        assert_eq!(fp, fingerprint(&set.clone()));
        let mut a = set.clone();
        a.ids[0] += 1000;
        let mut b = set.clone();
        b.labels[0] = (b.labels[0] + 1) % 2;
        let mut c = set.clone();
        c.pixels[4] += 0.25;
        let d = set.subset(&[1, 0]);
        for other in [a, b, c, d] {
            assert_ne!(fingerprint(&other), fp);
        }
    }
}
