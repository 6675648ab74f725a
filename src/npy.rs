//! `.npy` files for the CLI (through the `npyz` crate): 2-D float matrices in, quantized
//! data and parameters out, with errors that name the file and what was expected.

use std::fs::File;
use std::io::{BufReader, BufWriter};
use std::path::Path;

use half::f16;
use npyz::{AutoSerialize, DType, NpyFile, Order, TypeChar, WriterBuilder};

use crate::error::{Error, Result};

/// A float matrix read from a `.npy` file.
#[derive(Clone, Debug, PartialEq)]
pub enum FloatData {
    F32(Vec<f32>),
    F16(Vec<f16>),
}

impl FloatData {
    /// Number of values.
    pub fn len(&self) -> usize {
        match self {
            FloatData::F32(v) => v.len(),
            FloatData::F16(v) => v.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// An array read from a `.npy` file with its shape.
#[derive(Clone, Debug, PartialEq)]
pub struct Array<T> {
    pub data: Vec<T>,
    pub shape: Vec<usize>,
}

/// Integer element kinds this crate reads (`q.npy`, zero points).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IntKind {
    I8,
    U8,
    I32,
}

fn io_err(path: &Path, e: impl std::fmt::Display) -> Error {
    Error::Io(format!("{}: {e}", path.display()))
}

/// An opened `.npy` file with its shape, element kind and element size in bytes.
type Opened = (NpyFile<BufReader<File>>, Vec<usize>, TypeChar, u64);

fn open(path: &Path) -> Result<Opened> {
    let f = File::open(path).map_err(|e| io_err(path, e))?;
    let npy = NpyFile::new(BufReader::new(f)).map_err(|e| io_err(path, format!("not a valid .npy file ({e})")))?;
    if npy.order() == Order::Fortran && npy.shape().len() > 1 {
        return Err(io_err(
            path,
            "Fortran-ordered arrays are not supported; save a C-ordered array",
        ));
    }
    let shape = npy.shape().iter().map(|&d| d as usize).collect();
    let DType::Plain(ts) = npy.dtype() else {
        return Err(io_err(path, "structured arrays are not supported"));
    };
    Ok((npy, shape, ts.type_char(), ts.size_field()))
}

fn dtype_name(tc: TypeChar, size: u64) -> String {
    format!("{tc:?}{}", size * 8)
}

/// The data of an opened float32 or float16 file.
fn float_data(path: &Path, (npy, _, tc, size): Opened) -> Result<FloatData> {
    match (tc, size) {
        (TypeChar::Float, 4) => Ok(FloatData::F32(npy.into_vec().map_err(|e| io_err(path, e))?)),
        (TypeChar::Float, 2) => Ok(FloatData::F16(npy.into_vec().map_err(|e| io_err(path, e))?)),
        _ => Err(io_err(
            path,
            format!(
                "dtype {} is not supported; use float32 or float16",
                dtype_name(tc, size)
            ),
        )),
    }
}

/// Reads a 2-D f32 or f16 matrix.
pub fn read_float_matrix(path: &Path) -> Result<(FloatData, usize, usize)> {
    let opened = open(path)?;
    let [rows, cols] = opened.1[..] else {
        return Err(io_err(
            path,
            format!("expected a 2-D array, found shape {:?}", opened.1),
        ));
    };
    Ok((float_data(path, opened)?, rows, cols))
}

/// Reads a float32 or float16 array of any rank (biases).
pub fn read_floats(path: &Path) -> Result<(FloatData, Vec<usize>)> {
    let opened = open(path)?;
    let shape = opened.1.clone();
    Ok((float_data(path, opened)?, shape))
}

/// Reads an f32 array of any rank (scales, offsets).
pub fn read_f32(path: &Path) -> Result<Array<f32>> {
    let (npy, shape, tc, size) = open(path)?;
    if (tc, size) != (TypeChar::Float, 4) {
        return Err(io_err(
            path,
            format!("dtype {} is not supported; use float32", dtype_name(tc, size)),
        ));
    }
    Ok(Array {
        data: npy.into_vec().map_err(|e| io_err(path, e))?,
        shape,
    })
}

/// Reads an int8, uint8 or int32 array as i32 values, with its kind.
pub fn read_int(path: &Path) -> Result<(Array<i32>, IntKind)> {
    let (npy, shape, tc, size) = open(path)?;
    let (data, kind) = match (tc, size) {
        (TypeChar::Int, 1) => {
            let v: Vec<i8> = npy.into_vec().map_err(|e| io_err(path, e))?;
            (v.into_iter().map(i32::from).collect(), IntKind::I8)
        }
        (TypeChar::Uint, 1) => {
            let v: Vec<u8> = npy.into_vec().map_err(|e| io_err(path, e))?;
            (v.into_iter().map(i32::from).collect(), IntKind::U8)
        }
        (TypeChar::Int, 4) => (npy.into_vec().map_err(|e| io_err(path, e))?, IntKind::I32),
        _ => {
            return Err(io_err(
                path,
                format!(
                    "dtype {} is not supported; use int8, uint8 or int32",
                    dtype_name(tc, size)
                ),
            ));
        }
    };
    Ok((Array { data, shape }, kind))
}

/// Writes `data` with `shape` (C order).
pub fn write<T: AutoSerialize + Copy>(path: &Path, data: &[T], shape: &[usize]) -> Result<()> {
    let f = File::create(path).map_err(|e| io_err(path, e))?;
    let shape: Vec<u64> = shape.iter().map(|&d| d as u64).collect();
    let mut w = npyz::WriteOptions::new()
        .default_dtype()
        .shape(&shape)
        .writer(BufWriter::new(f))
        .begin_nd()
        .map_err(|e| io_err(path, e))?;
    w.extend(data.iter().copied()).map_err(|e| io_err(path, e))?;
    w.finish().map_err(|e| io_err(path, e))
}
