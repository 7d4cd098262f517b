//! Property tests of the data loaders: a valid file is generated, then broken (truncated at a
//! random offset, magic bytes flipped, header dimensions changed or set huge, NaN written into
//! float data), and every loader must return an error naming the file, never panic, and never
//! allocate the size a header claims without checking it against the real file length (a
//! counting allocator records the largest single allocation of each test thread).
//!
//! Cases per property (`ProptestConfig::cases`): `.npy` 128 each (5 properties), IDX 128
//! each (4 properties, plain and gzip), subset files 128 each (2 properties), run configs
//! (TOML) 128 each (4 properties), PNG folders 128 each (2 properties), checkpoints 128 each
//! (2 properties), grid files (TOML) 128 each (6 properties), noise-windows files 128 each
//! (2 properties); 3,456 cases in all (27 properties).

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};

use curadiff::bench::grid::Grid;
use curadiff::data::windows::{self, NoiseWindow};
use curadiff::data::{idx, images, npy, subset};
use curadiff::models::params::HostParam;
use curadiff::train::checkpoint;
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

// ---------------------------------------------------------------------------------------------
// Folders of PNGs (one subfolder per class)

/// An 8-bit grayscale (`c` = 1) or RGB (`c` = 3) PNG, `h`×`w`, of `data` in HWC order.
fn png_bytes(c: usize, h: usize, w: usize, data: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    let mut enc = png::Encoder::new(&mut out, w as u32, h as u32);
    enc.set_color(if c == 3 {
        png::ColorType::Rgb
    } else {
        png::ColorType::Grayscale
    });
    enc.set_depth(png::BitDepth::Eight);
    let mut writer = enc.write_header().unwrap();
    writer.write_image_data(data).unwrap();
    writer.finish().unwrap();
    out
}

/// Pixels of image `k` of a folder: a different pattern for every image.
fn png_pixels(k: usize, len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u32 * 37 + k as u32 * 101 + seed as u32) as u8)
        .collect()
}

/// A folder layout: images per class (1..=3 classes of 1..=3), channels, height, width.
fn png_layout() -> impl Strategy<Value = (Vec<usize>, usize, usize, usize)> {
    (
        prop::collection::vec(1usize..=3, 1..=3),
        prop_oneof![Just(1usize), Just(3)],
        1usize..=6,
        1usize..=6,
    )
}

/// Writes a folder `DIR/c<i>/<j>.png` of the layout; returns it and its files in load order.
fn png_folder(
    counts: &[usize],
    (c, h, w): (usize, usize, usize),
    seed: u8,
) -> (PathBuf, Vec<PathBuf>) {
    let dir = scratch("png");
    let mut files = Vec::new();
    for (class, &n) in counts.iter().enumerate() {
        std::fs::create_dir_all(dir.join(format!("c{class}"))).unwrap();
        for j in 0..n {
            let p = dir.join(format!("c{class}/{j}.png"));
            let data = png_pixels(files.len(), c * h * w, seed);
            std::fs::write(&p, png_bytes(c, h, w, &data)).unwrap();
            files.push(p);
        }
    }
    (dir, files)
}

/// Bytes of all files in a folder tree.
fn tree_bytes(dir: &Path) -> usize {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| {
            let p = e.unwrap().path();
            if p.is_dir() {
                tree_bytes(&p)
            } else {
                std::fs::metadata(&p).unwrap().len() as usize
            }
        })
        .sum()
}

/// Sets the width and height an IHDR chunk claims, with its CRC recomputed so that the
/// decoder accepts the header and reaches the size.
fn set_png_size(bytes: &mut [u8], w: u32, h: u32) {
    assert_eq!(&bytes[12..16], b"IHDR");
    bytes[16..20].copy_from_slice(&w.to_be_bytes());
    bytes[20..24].copy_from_slice(&h.to_be_bytes());
    let mut crc = flate2::Crc::new();
    crc.update(&bytes[12..29]);
    bytes[29..33].copy_from_slice(&crc.sum().to_be_bytes());
}

/// The largest output a PNG of `len` bytes can decode to: deflate expands at most 1032-fold,
/// and expanding 1-bit palette indices to RGB multiplies by 24 at most.
fn png_bound(len: usize) -> usize {
    bound(len * 1032 * 24)
}

proptest! {
    #![proptest_config(config())]

    /// A written folder loads back: classes in folder order, images in file order, pixels
    /// channel-first.
    #[test]
    fn png_valid_folders_load((counts, c, h, w) in png_layout(), seed in any::<u8>()) {
        let (dir, files) = png_folder(&counts, (c, h, w), seed);
        let set = images::load_png_folder(&dir).unwrap();
        prop_assert_eq!((set.channels, set.height, set.width), (c, h, w));
        prop_assert_eq!(set.len(), files.len());
        prop_assert_eq!(set.num_classes, counts.len());
        let want_labels: Vec<u32> = counts
            .iter()
            .enumerate()
            .flat_map(|(class, &n)| std::iter::repeat_n(class as u32, n))
            .collect();
        prop_assert_eq!(&set.labels, &want_labels);
        for k in 0..files.len() {
            let hwc = png_pixels(k, c * h * w, seed);
            let chw: Vec<f32> = (0..c * h * w)
                .map(|i| images::u8_to_unit(hwc[(i % (h * w)) * c + i / (h * w)]))
                .collect();
            prop_assert_eq!(set.image(k), &chw[..]);
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }

    /// One file of a folder cut anywhere, its magic flipped, its header claiming a huge
    /// width or height (with a valid CRC), or its size or channel count differing from the
    /// first image; or an empty class folder, or no class folder at all: refused, naming the
    /// file or folder, without allocating the claimed size.
    #[test]
    fn png_broken_folders_are_refused(
        (counts, c, h, w) in png_layout(),
        seed in any::<u8>(),
        how in 0u8..7,
        at in any::<prop::sample::Index>(),
        xor in 1u8..=255,
        huge in prop_oneof![Just(1u32 << 31), Just(u32::MAX), (1u32 << 28)..=u32::MAX],
        which in 0u8..3,
    ) {
        let (dir, files) = png_folder(&counts, (c, h, w), seed);
        let target = files[at.index(files.len())].clone();
        let mut bytes = std::fs::read(&target).unwrap();
        let named = match how {
            0 => {
                // Anywhere, or within the 12-byte end chunk (after every pixel).
                let len = bytes.len();
                bytes.truncate(if which == 0 { len - 1 - at.index(12) } else { at.index(len) });
                std::fs::write(&target, &bytes).unwrap();
                target
            }
            1 => {
                bytes[at.index(8)] ^= xor;
                std::fs::write(&target, &bytes).unwrap();
                target
            }
            2 => {
                let (nw, nh) = match which {
                    0 => (huge, h as u32),
                    1 => (w as u32, huge),
                    _ => (huge, huge),
                };
                set_png_size(&mut bytes, nw, nh);
                std::fs::write(&target, &bytes).unwrap();
                target
            }
            3 | 4 => {
                // A later image than the first, of another size or channel count.
                prop_assume!(files.len() >= 2);
                let target = files[1 + at.index(files.len() - 1)].clone();
                let (c2, h2, w2) = if how == 3 {
                    (c, if which == 0 { h } else { h + 1 }, if which == 0 { w + 1 } else { w })
                } else {
                    (4 - c, h, w)
                };
                std::fs::write(&target, png_bytes(c2, h2, w2, &png_pixels(0, c2 * h2 * w2, seed))).unwrap();
                target
            }
            5 => {
                // A class folder without images, anywhere in the class order.
                let empty = dir.join(format!("c{}x", at.index(counts.len())));
                std::fs::create_dir(&empty).unwrap();
                std::fs::write(empty.join("notes.txt"), "not an image").unwrap();
                empty
            }
            _ => {
                for class in 0..counts.len() {
                    std::fs::remove_dir_all(dir.join(format!("c{class}"))).unwrap();
                }
                std::fs::write(dir.join("stray.png"), png_bytes(c, h, w, &png_pixels(0, c * h * w, seed))).unwrap();
                dir.clone()
            }
        };
        let len = tree_bytes(&dir);
        let (r, largest) = largest_alloc(|| images::load_png_folder(&dir));
        prop_assert!(largest <= png_bound(len), "{} bytes allocated for {} bytes of files", largest, len);
        named_err(r.map(|s| s.len()), &named);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}

// ---------------------------------------------------------------------------------------------
// Checkpoints (safetensors tensors + JSON meta)

fn ckpt_meta(step: u64) -> checkpoint::CheckpointMeta {
    checkpoint::CheckpointMeta {
        step,
        nimg: step * 8,
        nimg_scored: step * 8,
        seconds: std::collections::BTreeMap::from([("train".to_string(), step as f64 / 4.0)]),
        tensors: String::new(),
        bytes: 0,
        checksum: String::new(),
        extra: serde_json::Value::Null,
    }
}

/// Tensor groups: 1..=2 groups of 1..=3 tensors of rank 1..=2 (dims 1..=4).
fn ckpt_groups() -> impl Strategy<Value = std::collections::BTreeMap<String, Vec<HostParam>>> {
    let param = prop::collection::vec(1usize..=4, 1..=2).prop_flat_map(|shape| {
        let n = shape.iter().product::<usize>();
        (Just(shape), prop::collection::vec(-2.0f32..=2.0, n))
    });
    prop::collection::vec(prop::collection::vec(param, 1..=3), 1..=2).prop_map(|gs| {
        gs.into_iter()
            .enumerate()
            .map(|(g, ps)| {
                let ps = ps
                    .into_iter()
                    .enumerate()
                    .map(|(i, (shape, data))| HostParam {
                        name: format!("l{i}.w"),
                        shape,
                        data,
                    })
                    .collect();
                (["net", "ema"][g].to_string(), ps)
            })
            .collect()
    })
}

/// Rewrites the size and checksum in a checkpoint's JSON to match its (changed) tensor file,
/// so that the tensor file itself reaches the safetensors parser.
fn ckpt_reseal(json: &Path, tensors: &[u8]) {
    let mut v: serde_json::Value = serde_json::from_slice(&std::fs::read(json).unwrap()).unwrap();
    v["bytes"] = serde_json::json!(tensors.len());
    v["checksum"] = serde_json::json!(curadiff::data::fingerprint::fnv1a(tensors));
    std::fs::write(json, serde_json::to_vec_pretty(&v).unwrap()).unwrap();
}

/// A safetensors file of one F32 tensor written by hand: `shape` in the header, `nbytes` of data.
fn safetensors_bytes(shape: &[u64], nbytes: usize) -> Vec<u8> {
    let head = serde_json::json!({
        "net/0000/l0.w": {"dtype": "F32", "shape": shape, "data_offsets": [0, nbytes]}
    })
    .to_string();
    let mut head = head.into_bytes();
    while !head.len().is_multiple_of(8) {
        head.push(b' ');
    }
    let mut out = (head.len() as u64).to_le_bytes().to_vec();
    out.extend_from_slice(&head);
    out.extend(std::iter::repeat_n(0u8, nbytes));
    out
}

proptest! {
    #![proptest_config(config())]

    /// A saved checkpoint loads back with its counters and tensors in stored order.
    #[test]
    fn ckpt_valid_round_trip(groups in ckpt_groups(), step in 1u64..1000) {
        let dir = scratch("ckpt");
        checkpoint::save(&dir, ckpt_meta(step), &groups, 2).unwrap();
        let c = checkpoint::load(&dir, step).unwrap();
        prop_assert_eq!(c.meta.step, step);
        prop_assert_eq!(&c.groups, &groups);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    /// The newest of two checkpoints broken: its tensor file cut (with or without the JSON
    /// resealed to match), a header length claiming a huge size, a tensor whose shape
    /// disagrees with its bytes (or of another dtype), its JSON cut or with a field of the
    /// wrong type. `load` refuses it as a bad checkpoint naming the broken file, without a
    /// claimed-size allocation; `latest` names it and says the previous step is intact;
    /// `resume_point` falls back to that step.
    #[test]
    fn ckpt_broken_is_refused(
        groups in ckpt_groups(),
        how in 0u8..7,
        at in any::<prop::sample::Index>(),
        huge in huge_dim(),
        field in 0usize..6,
        shape in prop::collection::vec(prop_oneof![1u64..=8, huge_dim()], 1..=3),
    ) {
        let dir = scratch("ckpt");
        checkpoint::save(&dir, ckpt_meta(1), &groups, 2).unwrap();
        let json = checkpoint::save(&dir, ckpt_meta(2), &groups, 2).unwrap();
        let tensors = dir.join("ckpt-000000002.safetensors");
        let bytes = std::fs::read(&tensors).unwrap();
        let named = match how {
            0 | 1 => {
                let cut = &bytes[..at.index(bytes.len())];
                std::fs::write(&tensors, cut).unwrap();
                if how == 1 {
                    ckpt_reseal(&json, cut);
                }
                tensors.clone()
            }
            2 => {
                let mut b = bytes.clone();
                b[..8].copy_from_slice(&huge.to_le_bytes());
                std::fs::write(&tensors, &b).unwrap();
                ckpt_reseal(&json, &b);
                tensors.clone()
            }
            3 | 4 => {
                let nbytes = 4 * (1 + at.index(16));
                let fits = shape.iter().try_fold(4u64, |a, &d| a.checked_mul(d)) == Some(nbytes as u64);
                prop_assume!(how == 4 || !fits);
                let mut b = safetensors_bytes(&shape, nbytes);
                if how == 4 {
                    // The same layout stored as I32: the bytes fit, the dtype does not.
                    b = safetensors_bytes(&[nbytes as u64 / 4], nbytes);
                    let pos = b.windows(5).position(|w| w == b"\"F32\"").unwrap();
                    b[pos + 1..pos + 4].copy_from_slice(b"I32");
                }
                std::fs::write(&tensors, &b).unwrap();
                ckpt_reseal(&json, &b);
                tensors.clone()
            }
            5 => {
                let text = std::fs::read(&json).unwrap();
                std::fs::write(&json, &text[..at.index(text.len())]).unwrap();
                json.clone()
            }
            _ => {
                let mut v: serde_json::Value = serde_json::from_slice(&std::fs::read(&json).unwrap()).unwrap();
                let (key, bad) = [
                    ("step", serde_json::json!("two")),
                    ("nimg", serde_json::json!(-1)),
                    ("nimg_scored", serde_json::json!(1.5)),
                    ("seconds", serde_json::json!([1, 2])),
                    ("tensors", serde_json::json!(5)),
                    ("bytes", serde_json::json!(null)),
                ][field].clone();
                v[key] = bad;
                std::fs::write(&json, serde_json::to_vec(&v).unwrap()).unwrap();
                json.clone()
            }
        };
        let len = std::fs::metadata(&tensors).unwrap().len() as usize + 4096;
        let (r, largest) = largest_alloc(|| checkpoint::load(&dir, 2));
        prop_assert!(largest <= bound(len), "{} bytes allocated", largest);
        prop_assert!(matches!(r, Err(curadiff::Error::BadCheckpoint { .. })), "{:?}", r.as_ref().map(|c| c.meta.step));
        named_err(r.map(|c| c.meta.step), &named);
        let msg = named_err(checkpoint::latest(&dir).map(|c| c.map(|c| c.meta.step)), &named);
        prop_assert!(msg.contains("step 1 is intact"), "{}", msg);
        let c = checkpoint::resume_point(&dir).unwrap().unwrap();
        prop_assert_eq!(c.meta.step, 1);
        prop_assert_eq!(&c.groups, &groups);
        prop_assert_eq!(c.warnings.len(), 1);
        prop_assert_eq!(checkpoint::list(&dir).unwrap(), vec![1]);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}

// ---------------------------------------------------------------------------------------------
// Grid files (TOML)

/// The grid files the project ships, as (name, text).
const GRIDS: [(&str, &str); 8] = [
    (
        "fmnist-ajest.toml",
        include_str!("../../../benches/fmnist-ajest.toml"),
    ),
    (
        "fmnist-noise-180k.toml",
        include_str!("../../../benches/fmnist-noise-180k.toml"),
    ),
    (
        "fmnist-prune.toml",
        include_str!("../../../benches/fmnist-prune.toml"),
    ),
    (
        "fmnist-prune-ratios.toml",
        include_str!("../../../benches/fmnist-prune-ratios.toml"),
    ),
    (
        "fmnist-engines.toml",
        include_str!("../../../benches/fmnist-engines.toml"),
    ),
    (
        "fmnist-noise.toml",
        include_str!("../../../benches/fmnist-noise.toml"),
    ),
    (
        "toy-ajest.toml",
        include_str!("../../../benches/toy-ajest.toml"),
    ),
    (
        "toy-noise.toml",
        include_str!("../../../benches/toy-noise.toml"),
    ),
];

fn grid_text() -> impl Strategy<Value = String> {
    prop::sample::select(GRIDS.iter().map(|g| g.1.to_string()).collect::<Vec<_>>())
}

/// Loads `text` as a grid file.
fn grid_load(text: &str) -> (curadiff::error::Result<Grid>, PathBuf) {
    let p = scratch("grid.toml");
    std::fs::write(&p, text).unwrap();
    let r = Grid::load(&p);
    std::fs::remove_file(&p).unwrap();
    (r, p)
}

/// The dotted paths of every leaf of a TOML value (array elements by index).
fn toml_leaves(v: &toml::Value, prefix: &str, out: &mut Vec<(String, toml::Value)>) {
    let mut push = |k: String, v: &toml::Value| {
        let path = if prefix.is_empty() {
            k
        } else {
            format!("{prefix}.{k}")
        };
        match v {
            toml::Value::Table(_) | toml::Value::Array(_) => toml_leaves(v, &path, out),
            _ => out.push((path, v.clone())),
        }
    };
    match v {
        toml::Value::Table(t) => t.iter().for_each(|(k, v)| push(k.clone(), v)),
        toml::Value::Array(a) => a
            .iter()
            .enumerate()
            .for_each(|(i, v)| push(i.to_string(), v)),
        _ => {}
    }
}

/// The slot at a dotted path of [`toml_leaves`].
fn toml_slot<'a>(mut v: &'a mut toml::Value, path: &str) -> &'a mut toml::Value {
    for k in path.split('.') {
        v = match v {
            toml::Value::Array(a) => &mut a[k.parse::<usize>().unwrap()],
            _ => v.get_mut(k).unwrap(),
        };
    }
    v
}

proptest! {
    #![proptest_config(config())]

    /// The shipped grid files load.
    #[test]
    fn grid_shipped_files_load(text in grid_text()) {
        let (r, _) = grid_load(&text);
        prop_assert!(r.is_ok(), "{:?}", r.err());
    }

    /// Cut anywhere, the text never makes the loader panic; cut before its first arm, it is
    /// refused naming the file.
    #[test]
    fn grid_truncated_never_panics(text in grid_text(), cut in any::<prop::sample::Index>()) {
        let mut end = cut.index(text.len());
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        let (r, p) = grid_load(&text[..end]);
        if !text[..end].contains("[[arm]]") {
            named_err(r.map(drop), &p);
        }
    }

    /// Any value replaced by one of another type (a string for a number or a list, a number
    /// for a string, a boolean for a list) is refused, naming the file.
    #[test]
    fn grid_wrong_types_are_refused(text in grid_text(), at in any::<prop::sample::Index>()) {
        let mut v: toml::Value = toml::from_str(&text).unwrap();
        let mut leaves = Vec::new();
        toml_leaves(&v, "", &mut leaves);
        let (path, old) = &leaves[at.index(leaves.len())];
        let new = match old {
            toml::Value::String(_) => toml::Value::Integer(1),
            toml::Value::Boolean(_) => toml::Value::String("x".into()),
            _ => toml::Value::String("x".into()),
        };
        *toml_slot(&mut v, path) = new;
        let (r, p) = grid_load(&toml::to_string(&v).unwrap());
        let msg = named_err(r.map(drop), &p);
        prop_assert!(msg.contains("malformed grid"), "{}: {}", path, msg);
    }

    /// An unknown key in any table is refused, naming the file and the key.
    #[test]
    fn grid_unknown_key_is_refused(text in grid_text(), at in any::<prop::sample::Index>()) {
        let mut v: toml::Value = toml::from_str(&text).unwrap();
        let mut tables = vec![String::new()];
        for (k, t) in v.as_table().unwrap() {
            match t {
                toml::Value::Table(_) => tables.push(k.clone()),
                toml::Value::Array(a) if a.iter().all(toml::Value::is_table) => {
                    tables.extend((0..a.len()).map(|i| format!("{k}.{i}")))
                }
                _ => {}
            }
        }
        let table = &tables[at.index(tables.len())];
        let slot = if table.is_empty() { &mut v } else { toml_slot(&mut v, table) };
        slot.as_table_mut().unwrap().insert("no_such_key".into(), toml::Value::Integer(1));
        let (r, p) = grid_load(&toml::to_string(&v).unwrap());
        let msg = named_err(r.map(drop), &p);
        prop_assert!(msg.contains("no_such_key"), "[{}]: {}", table, msg);
    }

    /// NaN or infinity in any number the grid checks (integers, and the guidance weight) is
    /// refused, naming the file.
    #[test]
    fn grid_non_finite_numbers_are_refused(
        text in grid_text(),
        at in any::<prop::sample::Index>(),
        bad in prop::sample::select(vec![f64::NAN, f64::INFINITY, f64::NEG_INFINITY]),
    ) {
        let mut v: toml::Value = toml::from_str(&text).unwrap();
        let mut leaves = Vec::new();
        toml_leaves(&v, "", &mut leaves);
        let numbers: Vec<&String> = leaves
            .iter()
            .filter(|(_, l)| l.is_integer() || l.is_float())
            .map(|(p, _)| p)
            .collect();
        prop_assume!(!numbers.is_empty());
        let path = numbers[at.index(numbers.len())];
        *toml_slot(&mut v, path) = toml::Value::Float(bad);
        let (r, p) = grid_load(&toml::to_string(&v).unwrap());
        named_err(r.map(drop), &p);
    }
}

proptest! {
    #![proptest_config(config())]

    /// NaN or infinity in a budget's seconds or a quality target is refused (a NaN budget
    /// would never be reached, a NaN target never met).
    #[test]
    fn grid_non_finite_budgets_and_targets_are_refused(
        text in grid_text(),
        bad in prop::sample::select(vec![f64::NAN, f64::INFINITY, f64::NEG_INFINITY]),
        field in prop::sample::select(vec!["seconds", "exact_loss", "fd"]),
    ) {
        let mut v: toml::Value = toml::from_str(&text).unwrap();
        let t = v.as_table_mut().unwrap();
        if field == "seconds" {
            t.entry("budgets").or_insert(toml::Value::Table(Default::default()))
                .as_table_mut().unwrap()
                .insert("seconds".into(), toml::Value::Array(vec![toml::Value::Float(bad)]));
        } else {
            let images = text.contains("fmnist");
            let key = if images { "fd" } else if field == "fd" { "classification" } else { field };
            t.entry("targets").or_insert(toml::Value::Table(Default::default()))
                .as_table_mut().unwrap()
                .insert(key.into(), toml::Value::Float(bad));
        }
        let (r, p) = grid_load(&toml::to_string(&v).unwrap());
        named_err(r.map(drop), &p);
    }
}

// ---------------------------------------------------------------------------------------------
// Noise-windows files (`.npy` rows (id, σ_min, σ_max) with a JSON sidecar)

/// A set of 1..=12 examples (ids 10, 13, …) and windows for a nonempty choice of them.
fn set_and_windows() -> impl Strategy<Value = (usize, Vec<(usize, f64, f64)>)> {
    (1usize..=12).prop_flat_map(|n| {
        (
            Just(n),
            prop::collection::btree_map(0..n, (0.0f64..=80.0, 0.0f64..=2.0), 1..=n)
                .prop_map(|m| m.into_iter().map(|(i, (lo, hi))| (i, lo, hi)).collect()),
        )
    })
}

proptest! {
    #![proptest_config(config())]

    /// A written windows file (float64, or the same rows as float32) applies: the named
    /// examples get their windows, the others are clean.
    #[test]
    fn windows_valid_files_apply((n, rows) in set_and_windows(), f32_rows in any::<bool>()) {
        let set = image_set(n);
        let p = scratch("ok-windows.npy");
        let w: Vec<(u64, NoiseWindow)> = rows
            .iter()
            .map(|&(i, lo, hi)| (set.ids[i], NoiseWindow { sigma_min: lo, sigma_max: hi }))
            .collect();
        windows::write(&p, &set, &w, 2.0).unwrap();
        if f32_rows {
            let data: Vec<f32> = w
                .iter()
                .flat_map(|(id, w)| [*id as f32, w.sigma_min as f32, w.sigma_max as f32])
                .collect();
            npy::write_f32(&p, &[w.len(), 3], &data).unwrap();
        }
        let got = windows::apply(&set, "", &p).unwrap();
        prop_assert_eq!(got.seconds, 2.0);
        for (i, g) in got.windows.iter().enumerate() {
            let want = rows
                .iter()
                .find(|r| r.0 == i)
                .map_or(NoiseWindow::CLEAN, |&(_, lo, hi)| NoiseWindow { sigma_min: lo, sigma_max: hi });
            let (lo, hi) = if f32_rows {
                (want.sigma_min as f32 as f64, want.sigma_max as f32 as f64)
            } else {
                (want.sigma_min, want.sigma_max)
            };
            prop_assert_eq!((g.sigma_min, g.sigma_max), (lo, hi));
        }
        std::fs::remove_file(subset::sidecar(&p)).unwrap();
        std::fs::remove_file(&p).unwrap();
    }

    /// The file cut anywhere, its sidecar cut, a NaN, infinite or negative σ, an id that is
    /// negative, fractional, NaN or infinite, a shape other than `[k, 3]`, integer data, or a
    /// huge row count in the header: refused, naming the file (or sidecar), without a
    /// claimed-size allocation.
    #[test]
    fn windows_broken_files_are_refused(
        (n, rows) in set_and_windows(),
        how in 0u8..6,
        at in any::<prop::sample::Index>(),
        bad_sigma in prop::sample::select(vec![f64::NAN, f64::INFINITY, f64::NEG_INFINITY, -1.0, -1e-9]),
        bad_id in prop::sample::select(vec![-1.0, -10.0, 10.5, 0.25, f64::NAN, f64::INFINITY, f64::NEG_INFINITY, 1e300]),
        cols in prop_oneof![1usize..=2, 4usize..=5],
        huge in huge_dim(),
    ) {
        let set = image_set(n);
        let p = scratch("windows.npy");
        let w: Vec<(u64, NoiseWindow)> = rows
            .iter()
            .map(|&(i, lo, hi)| (set.ids[i], NoiseWindow { sigma_min: lo, sigma_max: hi }))
            .collect();
        windows::write(&p, &set, &w, 0.0).unwrap();
        let mut data: Vec<f64> = w
            .iter()
            .flat_map(|(id, w)| [*id as f64, w.sigma_min, w.sigma_max])
            .collect();
        let k = w.len();
        let named = match how {
            0 => {
                let bytes = std::fs::read(&p).unwrap();
                std::fs::write(&p, &bytes[..at.index(bytes.len())]).unwrap();
                p.clone()
            }
            1 => {
                let side = subset::sidecar(&p);
                let text = std::fs::read(&side).unwrap();
                std::fs::write(&side, &text[..at.index(text.len())]).unwrap();
                side
            }
            2 => {
                data[3 * at.index(k) + 1 + at.index(2)] = bad_sigma;
                npy::write_f64(&p, &[k, 3], &data).unwrap();
                p.clone()
            }
            3 => {
                data[3 * at.index(k)] = bad_id;
                npy::write_f64(&p, &[k, 3], &data).unwrap();
                p.clone()
            }
            4 => {
                // The rows flattened or re-cut to another width, another rank, or as integers.
                match at.index(3) {
                    0 => {
                        let len = k * cols;
                        data.resize(len, 1.0);
                        npy::write_f64(&p, &[k, cols], &data).unwrap();
                    }
                    1 => npy::write_f64(&p, &[k * 3], &data).unwrap(),
                    _ => {
                        let ints: Vec<i64> = data.iter().map(|&x| x as i64).collect();
                        npy::write_i64(&p, &[k, 3], &ints).unwrap();
                    }
                }
                p.clone()
            }
            _ => {
                let body: Vec<u8> = data.iter().flat_map(|v| v.to_le_bytes()).collect();
                std::fs::write(&p, npy_bytes("<f8", &format!("({huge}, 3)"), &body)).unwrap();
                p.clone()
            }
        };
        let len = std::fs::metadata(&p).unwrap().len() as usize + 4096;
        let (r, largest) = largest_alloc(|| windows::apply(&set, "", &p));
        prop_assert!(largest <= bound(len), "{} bytes allocated", largest);
        named_err(r.map(|w| w.windows), &named);
        std::fs::remove_file(subset::sidecar(&p)).unwrap();
        std::fs::remove_file(&p).unwrap();
    }
}
