//! Property tests of the data loaders: a valid file is generated, then broken (truncated at a
//! random offset, magic bytes flipped, header dimensions changed or set huge, NaN written into
//! float data), and every loader must return an error naming the file, never panic, and never
//! allocate the size a header claims without checking it against the real file length (a
//! counting allocator records the largest single allocation of each test thread).
//!
//! Cases per property (`ProptestConfig::cases`): `.npy` 128 each (5 properties), IDX 128
//! each (4 properties, plain and gzip), subset files 128 each (2 properties), run configs
//! (TOML) 128 each (4 properties); 1,920 cases in all.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};

use curadiff::data::{idx, images, npy, subset};
use curadiff::train::config::RunConfig;
use curadiff::train::presets;
use proptest::prelude::*;

/// The system allocator, recording the largest single request made on each thread.
struct Counting;

thread_local! {
    static LARGEST: Cell<usize> = const { Cell::new(0) };
}

fn note(size: usize) {
    let _ = LARGEST.try_with(|c| c.set(c.get().max(size)));
}

// SAFETY: every call is forwarded unchanged to `System`; only a thread-local counter is added.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        note(layout.size());
        unsafe { System.alloc(layout) }
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        note(layout.size());
        unsafe { System.alloc_zeroed(layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        note(new_size);
        unsafe { System.realloc(ptr, layout, new_size) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static ALLOC: Counting = Counting;

/// Runs `f` and returns its result with the largest single allocation it made.
fn largest_alloc<R>(f: impl FnOnce() -> R) -> (R, usize) {
    LARGEST.with(|c| c.set(0));
    let r = f();
    (r, LARGEST.with(Cell::get))
}

/// An allocation bound for reading a file of `len` bytes: a few copies of the file plus
/// slack, far below any of the claimed sizes the properties write (≥ 2^31 elements).
fn bound(len: usize) -> usize {
    (1 << 20) + 16 * len
}

/// A fresh path in this process's scratch folder.
fn scratch(name: &str) -> PathBuf {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    let dir = std::env::temp_dir().join(format!("curadiff-loaders-prop-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir.join(format!("{}-{name}", NEXT.fetch_add(1, Ordering::Relaxed)))
}

/// Checks that `r` is an error whose message names `path`, and returns the message.
fn named_err<T: std::fmt::Debug>(r: curadiff::error::Result<T>, path: &Path) -> String {
    let name = path.file_name().unwrap().to_string_lossy().to_string();
    match r {
        Ok(v) => panic!("{} was accepted: {v:?}", path.display()),
        Err(e) => {
            let msg = e.to_string();
            assert!(msg.contains(&name), "message does not name {name}: {msg}");
            msg
        }
    }
}

fn config() -> ProptestConfig {
    ProptestConfig {
        cases: 128,
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

// ---------------------------------------------------------------------------------------------
// .npy

/// A `.npy` version 1.0 file with the given header fields and raw body.
fn npy_bytes(descr: &str, shape_text: &str, body: &[u8]) -> Vec<u8> {
    let mut head =
        format!("{{'descr': '{descr}', 'fortran_order': False, 'shape': {shape_text}, }}");
    while (10 + head.len() + 1) % 64 != 0 {
        head.push(' ');
    }
    head.push('\n');
    let mut out = b"\x93NUMPY\x01\x00".to_vec();
    out.extend_from_slice(&(head.len() as u16).to_le_bytes());
    out.extend_from_slice(head.as_bytes());
    out.extend_from_slice(body);
    out
}

fn shape_text(shape: &[u64]) -> String {
    match shape {
        [d] => format!("({d},)"),
        _ => format!(
            "({})",
            shape
                .iter()
                .map(u64::to_string)
                .collect::<Vec<_>>()
                .join(", ")
        ),
    }
}

/// A float32 array: shape of rank 1..=4, values in [-1, 1].
fn f32_array() -> impl Strategy<Value = (Vec<usize>, Vec<f32>)> {
    prop::collection::vec(1usize..=5, 1..=4).prop_flat_map(|shape| {
        let n = shape.iter().product::<usize>();
        (Just(shape), prop::collection::vec(-1.0f32..=1.0, n))
    })
}

/// Claimed dimensions far beyond any real file: 2^31, 2^32 - 1, 1e12, 2^62, usize::MAX.
fn huge_dim() -> impl Strategy<Value = u64> {
    prop_oneof![
        Just(1u64 << 31),
        Just(u32::MAX as u64),
        Just(1_000_000_000_000u64),
        Just(1u64 << 62),
        Just(u64::MAX),
        (1u64 << 31)..u64::MAX,
    ]
}

/// A loader reduced to success or its error.
type Reader = fn(&Path) -> curadiff::error::Result<()>;

/// Every reader of `.npy` files, by name.
fn npy_readers() -> [(&'static str, Reader); 6] {
    [
        ("read_f32", |p| npy::read_f32(p).map(drop)),
        ("read_f64", |p| npy::read_f64(p).map(drop)),
        ("read_u8", |p| npy::read_u8(p).map(drop)),
        ("read_i64", |p| npy::read_i64(p).map(drop)),
        ("read_any", |p| npy::read_any(p).map(drop)),
        ("load_npy_images", |p| {
            images::load_npy_images(p, None).map(drop)
        }),
    ]
}

/// Every reader refuses `bytes`, naming the file, without a claimed-size allocation.
fn npy_all_refuse(bytes: &[u8]) -> Result<(), TestCaseError> {
    let p = scratch("a.npy");
    std::fs::write(&p, bytes).unwrap();
    for (name, read) in npy_readers() {
        let (r, largest) = largest_alloc(|| read(&p));
        prop_assert!(r.is_err(), "{name} accepted a broken file");
        named_err(r, &p);
        prop_assert!(
            largest <= bound(bytes.len()),
            "{name} allocated {largest} bytes for a {}-byte file",
            bytes.len()
        );
    }
    std::fs::remove_file(&p).unwrap();
    Ok(())
}

proptest! {
    #![proptest_config(config())]

    /// The generator is valid: written files read back exactly (so the properties below
    /// start from a file the loaders accept).
    #[test]
    fn npy_valid_files_round_trip((shape, data) in f32_array()) {
        let p = scratch("ok.npy");
        npy::write_f32(&p, &shape, &data).unwrap();
        let a = npy::read_f32(&p).unwrap();
        prop_assert_eq!(&a.shape, &shape);
        prop_assert_eq!(&a.data, &data);
        std::fs::remove_file(&p).unwrap();
    }

    /// A file cut anywhere is refused by every reader.
    #[test]
    fn npy_truncated_is_refused((shape, data) in f32_array(), cut in any::<prop::sample::Index>()) {
        let body: Vec<u8> = data.iter().flat_map(|v| v.to_le_bytes()).collect();
        let full = npy_bytes("<f4", &shape_text(&shape.iter().map(|&d| d as u64).collect::<Vec<_>>()), &body);
        npy_all_refuse(&full[..cut.index(full.len())])?;
    }

    /// A flipped byte of the `\x93NUMPY` magic is refused.
    #[test]
    fn npy_bad_magic_is_refused((shape, data) in f32_array(), at in 0usize..6, xor in 1u8..=255) {
        let p = scratch("ok.npy");
        npy::write_f32(&p, &shape, &data).unwrap();
        let mut bytes = std::fs::read(&p).unwrap();
        std::fs::remove_file(&p).unwrap();
        bytes[at] ^= xor;
        npy_all_refuse(&bytes)?;
    }

    /// A header whose shape does not match the data (one dimension changed, or huge, in any
    /// position) is refused, before anything of the claimed size is allocated. The body is
    /// kept, cut, or emptied, so a wrapped size computation cannot match it by accident.
    #[test]
    fn npy_wrong_or_huge_dims_are_refused(
        (shape, data) in f32_array(),
        at in any::<prop::sample::Index>(),
        huge in huge_dim(),
        small in 1u64..=64,
        use_huge in any::<bool>(),
        extra_dims in prop::collection::vec(huge_dim(), 0..=2),
        body_len in prop_oneof![Just(None), Just(Some(0usize)), (0usize..64).prop_map(Some)],
    ) {
        let mut dims: Vec<u64> = shape.iter().map(|&d| d as u64).collect();
        let i = at.index(dims.len());
        let new = if use_huge { huge } else { small };
        prop_assume!(new != dims[i] || !extra_dims.is_empty());
        dims[i] = new;
        dims.extend(extra_dims);
        let mut body: Vec<u8> = data.iter().flat_map(|v| v.to_le_bytes()).collect();
        if let Some(k) = body_len {
            body.truncate(k);
        }
        // A shape that happens to fit the (shortened) body is a valid file, not a broken one.
        let fits = dims
            .iter()
            .try_fold(4u64, |a, &d| a.checked_mul(d))
            .is_some_and(|need| need == body.len() as u64);
        prop_assume!(!fits);
        npy_all_refuse(&npy_bytes("<f4", &shape_text(&dims), &body))?;
    }

    /// NaN in float32 images is refused by the image loader, naming the file and the value;
    /// the plain array reader returns it unchanged (it is data, not a broken file).
    #[test]
    fn npy_nan_images_are_refused(
        (n, c, h, w) in (1usize..=3, prop_oneof![Just(1usize), Just(3)], 1usize..=4, 1usize..=4),
        at in any::<prop::sample::Index>(),
        seed in any::<u32>(),
    ) {
        let len = n * c * h * w;
        let mut data: Vec<f32> = (0..len)
            .map(|i| ((i as u32).wrapping_mul(2_654_435_761) ^ seed) as f32 / u32::MAX as f32 * 2.0 - 1.0)
            .collect();
        let p = scratch("ok.npy");
        npy::write_f32(&p, &[n, c, h, w], &data).unwrap();
        prop_assert!(images::load_npy_images(&p, None).is_ok());
        let i = at.index(len);
        data[i] = f32::NAN;
        npy::write_f32(&p, &[n, c, h, w], &data).unwrap();
        prop_assert!(npy::read_f32(&p).unwrap().data[i].is_nan());
        let msg = named_err(images::load_npy_images(&p, None), &p);
        prop_assert!(msg.contains("NaN"), "{}", msg);
        std::fs::remove_file(&p).unwrap();
    }
}

// ---------------------------------------------------------------------------------------------
// IDX (plain and gzip)

/// An IDX u8 file: images `[n, rows, cols]` (rank 3) or labels `[n]` (rank 1).
fn idx_file() -> impl Strategy<Value = (Vec<u32>, Vec<u8>)> {
    prop_oneof![
        prop::collection::vec(1u32..=6, 3),
        prop::collection::vec(1u32..=40, 1)
    ]
    .prop_flat_map(|dims| {
        let n = dims.iter().map(|&d| d as usize).product::<usize>();
        (Just(dims), prop::collection::vec(any::<u8>(), n))
    })
}

fn idx_bytes(rank: u8, dims: &[u32], body: &[u8]) -> Vec<u8> {
    let mut out = vec![0, 0, 0x08, rank];
    for d in dims {
        out.extend_from_slice(&d.to_be_bytes());
    }
    out.extend_from_slice(body);
    out
}

fn gzip(raw: &[u8]) -> Vec<u8> {
    use std::io::Write;
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    enc.write_all(raw).unwrap();
    enc.finish().unwrap()
}

/// Writes `bytes` (gzipped when `gz`) and checks that both IDX readers refuse it, naming the
/// file, without a claimed-size allocation.
fn idx_all_refuse(bytes: &[u8], gz: bool) -> Result<(), TestCaseError> {
    let bytes = if gz { gzip(bytes) } else { bytes.to_vec() };
    let p = scratch(if gz { "a-idx.gz" } else { "a-idx" });
    std::fs::write(&p, &bytes).unwrap();
    let (r, largest) = largest_alloc(|| idx::read_idx_images(&p));
    prop_assert!(
        largest <= bound(bytes.len() * 64),
        "images: {largest} bytes allocated"
    );
    named_err(r, &p);
    let (r, largest) = largest_alloc(|| idx::read_idx_labels(&p));
    prop_assert!(
        largest <= bound(bytes.len() * 64),
        "labels: {largest} bytes allocated"
    );
    named_err(r, &p);
    std::fs::remove_file(&p).unwrap();
    Ok(())
}

proptest! {
    #![proptest_config(config())]

    /// Valid files, plain or gzipped, read back exactly.
    #[test]
    fn idx_valid_files_round_trip((dims, body) in idx_file(), gz in any::<bool>()) {
        let raw = idx_bytes(dims.len() as u8, &dims, &body);
        let p = scratch("ok-idx");
        std::fs::write(&p, if gz { gzip(&raw) } else { raw }).unwrap();
        if dims.len() == 3 {
            let im = idx::read_idx_images(&p).unwrap();
            prop_assert_eq!((im.n, im.rows, im.cols), (dims[0] as usize, dims[1] as usize, dims[2] as usize));
            prop_assert_eq!(&im.pixels, &body);
        } else {
            prop_assert_eq!(&idx::read_idx_labels(&p).unwrap(), &body);
        }
        std::fs::remove_file(&p).unwrap();
    }

    /// A file cut anywhere (the plain bytes, or the gzip stream itself) is refused.
    #[test]
    fn idx_truncated_is_refused(
        (dims, body) in idx_file(),
        cut in any::<prop::sample::Index>(),
        mode in 0u8..3,
    ) {
        let raw = idx_bytes(dims.len() as u8, &dims, &body);
        match mode {
            0 => idx_all_refuse(&raw[..cut.index(raw.len())], false)?,
            1 => idx_all_refuse(&raw[..cut.index(raw.len())], true)?,
            _ => {
                // The compressed stream cut short: a truncated download.
                let z = gzip(&raw);
                let p = scratch("cut-idx.gz");
                std::fs::write(&p, &z[..cut.index(z.len())]).unwrap();
                let r = if dims.len() == 3 {
                    idx::read_idx_images(&p).map(drop)
                } else {
                    idx::read_idx_labels(&p).map(drop)
                };
                named_err(r, &p);
                std::fs::remove_file(&p).unwrap();
            }
        }
    }

    /// A flipped byte of the 4-byte magic is refused.
    #[test]
    fn idx_bad_magic_is_refused((dims, body) in idx_file(), at in 0usize..4, xor in 1u8..=255, gz in any::<bool>()) {
        let mut raw = idx_bytes(dims.len() as u8, &dims, &body);
        raw[at] ^= xor;
        idx_all_refuse(&raw, gz)?;
    }

    /// A changed or huge (2^31, 2^32 - 1) dimension is refused before any allocation of
    /// the claimed size.
    #[test]
    fn idx_wrong_or_huge_dims_are_refused(
        (dims, body) in idx_file(),
        at in any::<prop::sample::Index>(),
        new in prop_oneof![1u32..=64, Just(1u32 << 31), Just(u32::MAX), (1u32 << 31)..=u32::MAX],
        body_len in prop_oneof![Just(None), (0usize..64).prop_map(Some)],
        gz in any::<bool>(),
    ) {
        let mut dims = dims;
        let i = at.index(dims.len());
        dims[i] = new;
        let mut body = body;
        if let Some(k) = body_len {
            body.truncate(k);
        }
        let need: u64 = dims.iter().map(|&d| d as u64).product();
        prop_assume!(need != body.len() as u64);
        idx_all_refuse(&idx_bytes(dims.len() as u8, &dims, &body), gz)?;
    }
}

// ---------------------------------------------------------------------------------------------
// Subset files (`.npy` ids or mask with a JSON sidecar)

/// A 1×2×2 image set of `n` examples with ids 10, 13, 16, …
fn image_set(n: usize) -> images::ImageSet {
    images::ImageSet {
        channels: 1,
        height: 2,
        width: 2,
        pixels: (0..n * 4).map(|i| (i % 7) as f32 / 7.0).collect(),
        labels: (0..n).map(|i| (i % 2) as u32).collect(),
        num_classes: 2,
        class_names: vec!["a".into(), "b".into()],
        ids: (0..n as u64).map(|i| 10 + 3 * i).collect(),
        source: vec![images::Source::Real; n],
    }
}

/// A set of 1..=12 examples and a nonempty choice of distinct positions in it.
fn set_and_choice() -> impl Strategy<Value = (usize, Vec<usize>)> {
    (1usize..=12).prop_flat_map(|n| {
        (
            Just(n),
            prop::collection::btree_set(0..n, 1..=n).prop_map(|s| s.into_iter().collect()),
        )
    })
}

proptest! {
    #![proptest_config(config())]

    /// A written subset applies and keeps exactly the named examples, in the set's order.
    #[test]
    fn subset_valid_files_apply((n, keep) in set_and_choice()) {
        let set = image_set(n);
        let ids: Vec<u64> = keep.iter().rev().map(|&i| set.ids[i]).collect();
        let p = scratch("ok-subset.npy");
        subset::write(&p, &set, &ids, 1.5).unwrap();
        let s = subset::apply(&set, &p).unwrap();
        let want: Vec<u64> = keep.iter().map(|&i| set.ids[i]).collect();
        prop_assert_eq!(s.set.ids, want);
        std::fs::remove_file(subset::sidecar(&p)).unwrap();
        std::fs::remove_file(&p).unwrap();
    }

    /// The ids file cut anywhere, a flipped magic byte, a changed or huge length in its
    /// header, an unknown or repeated id, or a cut sidecar: refused, naming the file.
    #[test]
    fn subset_broken_files_are_refused(
        (n, keep) in set_and_choice(),
        how in 0u8..6,
        at in any::<prop::sample::Index>(),
        xor in 1u8..=255,
        huge in huge_dim(),
    ) {
        let set = image_set(n);
        let ids: Vec<u64> = keep.iter().map(|&i| set.ids[i]).collect();
        let p = scratch("subset.npy");
        subset::write(&p, &set, &ids, 0.0).unwrap();
        let bytes = std::fs::read(&p).unwrap();
        let body: Vec<u8> = ids.iter().flat_map(|&v| (v as i64).to_le_bytes()).collect();
        let (broken, named) = match how {
            0 => (bytes[..at.index(bytes.len())].to_vec(), p.clone()),
            1 => {
                let mut b = bytes.clone();
                b[at.index(6)] ^= xor;
                (b, p.clone())
            }
            2 => (npy_bytes("<i8", &format!("({huge},)"), &body), p.clone()),
            3 => (npy_bytes("<i8", &format!("({},)", ids.len() + 1), &body), p.clone()),
            4 => {
                // An id the set does not have (ids are 10 + 3i), or one named twice.
                let mut bad = ids.clone();
                bad.push(if at.index(2) == 0 { 11 } else { ids[0] });
                let b: Vec<u8> = bad.iter().flat_map(|&v| (v as i64).to_le_bytes()).collect();
                (npy_bytes("<i8", &format!("({},)", bad.len()), &b), p.clone())
            }
            _ => {
                let side = subset::sidecar(&p);
                let text = std::fs::read(&side).unwrap();
                std::fs::write(&side, &text[..at.index(text.len())]).unwrap();
                (bytes.clone(), side)
            }
        };
        std::fs::write(&p, &broken).unwrap();
        let (r, largest) = largest_alloc(|| subset::apply(&set, &p));
        prop_assert!(largest <= bound(broken.len() + 4096), "{} bytes allocated", largest);
        named_err(r.map(|s| s.set.ids), &named);
        std::fs::remove_file(subset::sidecar(&p)).unwrap();
        std::fs::remove_file(&p).unwrap();
    }
}

// ---------------------------------------------------------------------------------------------
// Run configs (TOML)

/// The text of a preset's config.
fn preset_toml() -> impl Strategy<Value = String> {
    prop::sample::select(presets::PRESETS.iter().map(|p| p.name).collect::<Vec<_>>())
        .prop_map(|name| presets::preset(name).unwrap().to_toml().unwrap())
}

/// The dotted paths of every float leaf of a TOML table.
fn float_leaves(v: &toml::Value, prefix: &str, out: &mut Vec<String>) {
    if let toml::Value::Table(t) = v {
        for (k, v) in t {
            let path = if prefix.is_empty() {
                k.clone()
            } else {
                format!("{prefix}.{k}")
            };
            match v {
                toml::Value::Float(_) => out.push(path),
                toml::Value::Table(_) => float_leaves(v, &path, out),
                _ => {}
            }
        }
    }
}

proptest! {
    #![proptest_config(config())]

    /// A preset's TOML reads back to the same config, and passes validation.
    #[test]
    fn config_round_trips(text in preset_toml()) {
        let cfg = RunConfig::from_toml(&text).unwrap();
        cfg.validate().unwrap();
        prop_assert_eq!(cfg.to_toml().unwrap(), text);
    }

    /// Cut anywhere, the text never makes the parser or the validator panic.
    #[test]
    fn config_truncated_never_panics(text in preset_toml(), cut in any::<prop::sample::Index>()) {
        let mut end = cut.index(text.len());
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        if let Ok(cfg) = RunConfig::from_toml(&text[..end]) {
            let _ = cfg.validate();
        }
    }

    /// An unknown key in any section is refused, naming the key.
    #[test]
    fn config_unknown_key_is_refused(text in preset_toml(), at in any::<prop::sample::Index>()) {
        let lines: Vec<&str> = text.lines().collect();
        let i = at.index(lines.len() + 1);
        let mut out: Vec<String> = lines.iter().map(|s| s.to_string()).collect();
        // Inserted before a section header or after a key, the key lands in some table.
        out.insert(i.min(out.len()), "no_such_key = 1".to_string());
        let e = RunConfig::from_toml(&out.join("\n")).unwrap_err().to_string();
        prop_assert!(e.contains("no_such_key"), "{}", e);
    }

    /// NaN or infinity in any float field is refused by validation, naming the field.
    #[test]
    fn config_non_finite_floats_are_refused(
        text in preset_toml(),
        at in any::<prop::sample::Index>(),
        bad in prop::sample::select(vec![f64::NAN, f64::INFINITY, f64::NEG_INFINITY]),
    ) {
        let mut v: toml::Value = toml::from_str(&text).unwrap();
        let mut leaves = Vec::new();
        float_leaves(&v, "", &mut leaves);
        prop_assume!(!leaves.is_empty());
        let field = &leaves[at.index(leaves.len())];
        let mut slot = &mut v;
        for k in field.split('.') {
            slot = slot.get_mut(k).unwrap();
        }
        *slot = toml::Value::Float(bad);
        let text = toml::to_string(&v).unwrap();
        let verdict = RunConfig::from_toml(&text).and_then(|c| c.validate());
        let last = field.rsplit('.').next().unwrap();
        match verdict {
            Ok(()) => prop_assert!(false, "{} = {} was accepted", field, bad),
            Err(e) => {
                let msg = e.to_string();
                prop_assert!(msg.contains(last), "{} = {}: {}", field, bad, msg);
            }
        }
    }
}
