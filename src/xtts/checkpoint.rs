//! Reads the released `model.pth` (a zip pickle `{'model': state_dict, 'config': ...}`) and
//! `speakers_xtts.pth` into tch tensors. tch's own loaders refuse these files; the pickle is
//! walked with candle's reader and the raw storages are read from the zip here.

use std::collections::HashMap;
use std::fs::File;
use std::io::{BufReader, Read};
use std::path::Path;

use anyhow::{anyhow, bail, Context, Result};
use candle_core::pickle::{Object, Stack};
use candle_core::DType;
use tch::{Device, Kind, Tensor};

/// A state dict: tensor name to tensor, on the CPU, contiguous.
pub type StateDict = HashMap<String, Tensor>;

/// Loads the state dict of an XTTS checkpoint, normalising the key variants the released
/// and fine-tuned files use: a trainer `xtts.` prefix is stripped, aliases that inference
/// recreates (`gpt.gpt_inference.*`, `gpt.gpt.wte.*`) and training-only parts are dropped.
pub fn load_model_state(path: &Path) -> Result<StateDict> {
    let file = File::open(path).with_context(|| format!("{}: cannot open", path.display()))?;
    let mut zip = zip::ZipArchive::new(BufReader::new(file))
        .with_context(|| format!("{}: not a torch zip checkpoint", path.display()))?;
    let (root, storage_dir) = read_root_object(&mut zip, path)?;
    let model =
        dict_get(root, "model").with_context(|| format!("{}: no 'model' entry in the checkpoint", path.display()))?;
    let mut out = StateDict::new();
    for (name, value) in into_dict(model).with_context(|| format!("{}: 'model' is not a dict", path.display()))? {
        let Object::Unicode(name) = name else { continue };
        let name = name.strip_prefix("xtts.").unwrap_or(&name).to_string();
        if is_ignored_key(&name) {
            continue;
        }
        let tensor = read_tensor(&mut zip, &storage_dir, value)
            .with_context(|| format!("{}: tensor '{name}'", path.display()))?;
        if let Some(tensor) = tensor {
            out.insert(name, tensor);
        }
    }
    if out.is_empty() {
        bail!("{}: the 'model' entry holds no tensors", path.display());
    }
    Ok(out)
}

/// Loads `speakers_xtts.pth`: `{name: {'gpt_cond_latent': [1,32,1024], 'speaker_embedding': [1,512,1]}}`.
pub fn load_speakers(path: &Path) -> Result<Vec<(String, StateDict)>> {
    let file = File::open(path).with_context(|| format!("{}: cannot open", path.display()))?;
    let mut zip = zip::ZipArchive::new(BufReader::new(file))
        .with_context(|| format!("{}: not a torch zip file", path.display()))?;
    let (root, storage_dir) = read_root_object(&mut zip, path)?;
    let mut speakers = Vec::new();
    for (name, entry) in into_dict(root).with_context(|| format!("{}: not a dict", path.display()))? {
        let Object::Unicode(name) = name else { continue };
        let mut tensors = StateDict::new();
        for (key, value) in
            into_dict(entry).with_context(|| format!("{}: speaker '{name}' is not a dict", path.display()))?
        {
            let Object::Unicode(key) = key else { continue };
            if let Some(t) = read_tensor(&mut zip, &storage_dir, value)
                .with_context(|| format!("{}: speaker '{name}' tensor '{key}'", path.display()))?
            {
                tensors.insert(key, t);
            }
        }
        speakers.push((name, tensors));
    }
    Ok(speakers)
}

fn is_ignored_key(name: &str) -> bool {
    name.starts_with("gpt.gpt_inference.")
        || name.starts_with("gpt.gpt.wte.")
        || name.starts_with("torch_mel_spectrogram_style_encoder.")
        || name.starts_with("torch_mel_spectrogram_dvae.")
        || name.starts_with("dvae.")
}

type Zip = zip::ZipArchive<BufReader<File>>;

/// Unpickles `<root>/data.pkl` and returns it with `<root>`, under which the storages lie.
/// Objects of unknown classes (the pickled config) stay opaque.
fn read_root_object(zip: &mut Zip, path: &Path) -> Result<(Object, String)> {
    let pkl = (0..zip.len())
        .filter_map(|i| zip.name_for_index(i).and_then(|n| n.ok().map(|n| n.to_string())))
        .find(|n| n.ends_with("data.pkl"))
        .ok_or_else(|| anyhow!("{}: no data.pkl in the archive", path.display()))?;
    let mut reader = BufReader::new(zip.by_name(&pkl)?);
    let mut stack = Stack::empty();
    stack
        .read_loop(&mut reader)
        .map_err(|e| anyhow!("{}: cannot unpickle {pkl}: {e}", path.display()))?;
    let obj = stack
        .finalize()
        .map_err(|e| anyhow!("{}: cannot unpickle {pkl}: {e}", path.display()))?;
    // candle names a storage "<dir>/<key>" with dir = "<root>/data".
    let storage_dir = pkl.strip_suffix(".pkl").unwrap_or(&pkl).to_string();
    Ok((obj, storage_dir))
}

/// A dict's entries; an OrderedDict arrives as REDUCE(OrderedDict, ()) + SETITEMS, which
/// candle's reader may leave wrapped in Build/Reduce.
fn into_dict(obj: Object) -> Result<Vec<(Object, Object)>> {
    match obj {
        Object::Dict(kv) => Ok(kv),
        Object::Build { callable, .. } => into_dict(*callable),
        Object::Reduce { callable, args } => match (*callable, *args) {
            (Object::Class { class_name, .. }, Object::Dict(kv)) if class_name == "OrderedDict" => Ok(kv),
            (other, _) => into_dict(other),
        },
        other => bail!("expected a dict, found {}", short_debug(&other)),
    }
}

fn dict_get(obj: Object, key: &str) -> Result<Object> {
    into_dict(obj)?
        .into_iter()
        .find(|(k, _)| matches!(k, Object::Unicode(s) if s == key))
        .map(|(_, v)| v)
        .ok_or_else(|| anyhow!("key '{key}' not found"))
}

fn short_debug(obj: &Object) -> String {
    let s = format!("{obj:?}");
    s.chars().take(120).collect()
}

/// Rebuilds one tensor from a `_rebuild_tensor_v2` (or `_rebuild_parameter`) pickle entry.
/// Returns None for entries that are not tensors.
fn read_tensor(zip: &mut Zip, storage_dir: &str, value: Object) -> Result<Option<Tensor>> {
    let info = match value.into_tensor_info(Object::Unicode("t".into()), Path::new(storage_dir)) {
        Ok(Some(info)) => info,
        Ok(None) => return Ok(None),
        Err(e) => bail!("not a tensor record: {e}"),
    };
    let kind = match info.dtype {
        DType::F32 => Kind::Float,
        DType::F64 => Kind::Double,
        DType::F16 => Kind::Half,
        DType::BF16 => Kind::BFloat16,
        DType::U8 => Kind::Uint8,
        DType::I64 => Kind::Int64,
        other => bail!("unsupported dtype {other:?}"),
    };
    let elem = info.dtype.size_in_bytes();
    let entry_name = info.path.clone();
    let mut entry = zip
        .by_name(&entry_name)
        .with_context(|| format!("storage {entry_name} missing from the archive"))?;
    let mut bytes = Vec::with_capacity(entry.size() as usize);
    entry.read_to_end(&mut bytes)?;
    let numel = bytes.len() / elem;
    let storage = Tensor::from_data_size(&bytes, &[numel as i64], kind);
    let shape: Vec<i64> = info.layout.dims().iter().map(|&d| d as i64).collect();
    let stride: Vec<i64> = info.layout.stride().iter().map(|&d| d as i64).collect();
    let offset = (info.layout.start_offset() / elem) as i64;
    let t = storage.as_strided(&shape, &stride, Some(offset)).contiguous();
    Ok(Some(t.to_device(Device::Cpu)))
}

/// The model's tensors with lookups that fail with the file and key named, moved to the
/// inference device on the way out.
pub struct Weights {
    tensors: StateDict,
    source: String,
    device: Device,
    /// The float type handed out (float32 unless a reduced-precision copy was asked for).
    kind: Kind,
}

impl Weights {
    pub fn new(tensors: StateDict, source: &Path, device: Device) -> Self {
        Self {
            tensors,
            source: source.display().to_string(),
            device,
            kind: Kind::Float,
        }
    }

    pub fn device(&self) -> Device {
        self.device
    }

    pub fn contains(&self, name: &str) -> bool {
        self.tensors.contains_key(name)
    }

    /// The same tensors handed out as `kind` (for a reduced-precision GPT); the data is shared
    /// until a tensor is taken.
    pub fn with_kind(&self, kind: Kind) -> Weights {
        Weights {
            tensors: self
                .tensors
                .iter()
                .map(|(k, t)| (k.clone(), t.shallow_clone()))
                .collect(),
            source: self.source.clone(),
            device: self.device,
            kind,
        }
    }

    /// The tensor `name`, as float32 (or the kind of [`Self::with_kind`]), on the inference device.
    pub fn get(&self, name: &str) -> Result<Tensor> {
        let t = self
            .tensors
            .get(name)
            .ok_or_else(|| anyhow!("{}: missing tensor '{name}'", self.source))?;
        Ok(t.to_kind(self.kind).to_device(self.device))
    }

    /// The tensor `name`, checked against the expected shape.
    pub fn get_shaped(&self, name: &str, shape: &[i64]) -> Result<Tensor> {
        let t = self.get(name)?;
        if t.size() != shape {
            bail!(
                "{}: tensor '{name}' has shape {:?}, expected {:?}",
                self.source,
                t.size(),
                shape
            );
        }
        Ok(t)
    }

    /// The weight of a weight-normed layer `prefix`, folded: `g * v / ||v||` over all dims but 0.
    /// Accepts `prefix.parametrizations.weight.original0/1` and the legacy `prefix.weight_g/_v`,
    /// and a plain `prefix.weight` where the norm was already removed.
    pub fn weight_norm(&self, prefix: &str) -> Result<Tensor> {
        let (g, v) = (
            format!("{prefix}.parametrizations.weight.original0"),
            format!("{prefix}.parametrizations.weight.original1"),
        );
        let (g_old, v_old) = (format!("{prefix}.weight_g"), format!("{prefix}.weight_v"));
        let (g, v) = if self.contains(&g) {
            (self.get(&g)?, self.get(&v)?)
        } else if self.contains(&g_old) {
            (self.get(&g_old)?, self.get(&v_old)?)
        } else {
            return self.get(&format!("{prefix}.weight"));
        };
        Ok(Tensor::internal_weight_norm(&v, &g, 0))
    }

    /// Names of all tensors, for diagnostics.
    pub fn names(&self) -> impl Iterator<Item = &String> {
        self.tensors.keys()
    }
}
