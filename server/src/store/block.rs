//! A compact block: one series' samples of one hour packed as Gorilla packs them (Pelkonen et
//! al., VLDB 2015): timestamps as the change of their spacing, values XOR-ed with the previous
//! one. Values that are decimals of a few places (`53.7`, `0.25`, counters) are packed as the
//! change of the integer they are in hundredths (or whatever place fits), which Gorilla's XOR
//! of their binary fractions cannot shrink. A sample a second takes about a byte.

/// One sample: microseconds since the Unix epoch and its value.
pub type Sample = (i64, f64);

#[derive(Debug, thiserror::Error)]
#[error("a stored block of samples is damaged")]
pub struct Damaged;

/// Decimal places tried for the integer packing: `10^k` for k below this.
const PLACES: u32 = 7;
const POWERS: [f64; PLACES as usize] = [1.0, 10.0, 100.0, 1e3, 1e4, 1e5, 1e6];

/// Packs `samples`, which are in time order.
pub fn encode(samples: &[Sample]) -> Vec<u8> {
    let mut out = Bits::default();
    out.push(samples.len() as u64, 32);
    let Some(&(first_ts, _)) = samples.first() else {
        return out.finish();
    };
    let decimal = (0..PLACES).find_map(|k| as_integers(samples, k).map(|ints| (k, ints)));
    out.push(decimal.as_ref().map_or(0, |(k, _)| u64::from(k + 1)), 3);
    out.push(first_ts as u64, 64);
    let (mut ts, mut delta) = (first_ts, 0i64);
    for &(next_ts, _) in &samples[1..] {
        let next_delta = next_ts.wrapping_sub(ts);
        push_class(&mut out, next_delta.wrapping_sub(delta), &DOD_CLASSES);
        (ts, delta) = (next_ts, next_delta);
    }
    match decimal {
        Some((_, ints)) => {
            out.push(ints[0] as u64, 64);
            for pair in ints.windows(2) {
                push_class(&mut out, pair[1] - pair[0], &STEP_CLASSES);
            }
        }
        None => push_xors(&mut out, samples),
    }
    out.finish()
}

/// The values of `samples` as integers of `10^-k`, if each is exactly such an integer divided
/// by `10^k` (a division IEEE rounds correctly, so `53.7` read from text comes back bit for bit).
fn as_integers(samples: &[Sample], k: u32) -> Option<Vec<i64>> {
    let power = POWERS[k as usize];
    samples
        .iter()
        .map(|&(_, value)| {
            let scaled = (value * power).round();
            let int = scaled as i64;
            let exact = scaled.abs() < 9.0e15 && (int as f64 / power).to_bits() == value.to_bits();
            exact.then_some(int)
        })
        .collect()
}

fn push_xors(out: &mut Bits, samples: &[Sample]) {
    let mut value = samples[0].1.to_bits();
    out.push(value, 64);
    let mut window = Window::NONE;
    for &(_, next_value) in &samples[1..] {
        let bits = next_value.to_bits();
        let xor = bits ^ value;
        value = bits;
        if xor == 0 {
            out.push(0, 1);
            continue;
        }
        let (leading, trailing) = (xor.leading_zeros().min(31), xor.trailing_zeros());
        if window.fits(leading, trailing) {
            out.push(0b10, 2);
            out.push(xor >> window.trailing, window.len);
        } else {
            window = Window {
                trailing,
                len: 64 - leading - trailing,
            };
            out.push(0b11, 2);
            out.push(u64::from(leading), 5);
            // 64 meaningful bits are written as 0: six bits hold 0..=63.
            out.push(u64::from(window.len & 63), 6);
            out.push(xor >> trailing, window.len);
        }
    }
}

/// Unpacks a block written by [`encode`].
pub fn decode(data: &[u8]) -> Result<Vec<Sample>, Damaged> {
    let mut bits = Reader { data, at: 0 };
    let count = bits.take(32)? as usize;
    // Every sample after the first takes at least two bits: a count beyond that is damage.
    if count > 1 + data.len() * 4 {
        return Err(Damaged);
    }
    if count == 0 {
        return Ok(Vec::new());
    }
    let mode = bits.take(3)? as u32;
    let mut stamps = Vec::with_capacity(count);
    let (mut ts, mut delta) = (bits.take(64)? as i64, 0i64);
    stamps.push(ts);
    for _ in 1..count {
        delta = delta.wrapping_add(take_class(&mut bits, &DOD_CLASSES)?);
        ts = ts.wrapping_add(delta);
        stamps.push(ts);
    }
    let values = match mode {
        0 => take_xors(&mut bits, count)?,
        places if places <= PLACES => {
            let power = POWERS[places as usize - 1];
            let mut int = bits.take(64)? as i64;
            let mut values = Vec::with_capacity(count);
            values.push(int as f64 / power);
            for _ in 1..count {
                int = int.wrapping_add(take_class(&mut bits, &STEP_CLASSES)?);
                values.push(int as f64 / power);
            }
            values
        }
        _ => return Err(Damaged),
    };
    Ok(stamps.into_iter().zip(values).collect())
}

fn take_xors(bits: &mut Reader, count: usize) -> Result<Vec<f64>, Damaged> {
    let mut value = bits.take(64)?;
    let mut values = Vec::with_capacity(count);
    values.push(f64::from_bits(value));
    let mut window = Window::NONE;
    for _ in 1..count {
        if bits.take(1)? == 1 {
            if bits.take(1)? == 1 {
                let leading = bits.take(5)? as u32;
                let len = match bits.take(6)? as u32 {
                    0 => 64,
                    len => len,
                };
                let trailing = 64u32.checked_sub(leading + len).ok_or(Damaged)?;
                window = Window { trailing, len };
            } else if window.len == 0 {
                return Err(Damaged);
            }
            value ^= bits.take(window.len)? << window.trailing;
        }
        values.push(f64::from_bits(value));
    }
    Ok(values)
}

/// The meaningful bits of the last XOR written in full; later ones that fit reuse it.
#[derive(Clone, Copy)]
struct Window {
    trailing: u32,
    len: u32,
}

impl Window {
    const NONE: Self = Self {
        trailing: 0,
        len: 0,
    };

    fn fits(self, leading: u32, trailing: u32) -> bool {
        self.len > 0 && trailing >= self.trailing && 64 - leading <= self.trailing + self.len
    }
}

/// Classes of a signed change: a prefix, then the value zigzag-encoded in that many bits; no
/// change takes one bit.
type Classes = [(u64, u32, u32); 4];

/// Timestamps' change of spacing, in microseconds: regular spacing takes one bit, the jitter of
/// stamps of receipt (milliseconds) about three bytes.
const DOD_CLASSES: Classes = [
    (0b10, 2, 12),
    (0b110, 3, 20),
    (0b1110, 4, 32),
    (0b1111, 4, 64),
];
/// Decimal values' steps: a gauge moving by a few tenths takes a byte, a counter two.
const STEP_CLASSES: Classes = [
    (0b10, 2, 6),
    (0b110, 3, 13),
    (0b1110, 4, 32),
    (0b1111, 4, 64),
];

fn push_class(out: &mut Bits, change: i64, classes: &Classes) {
    if change == 0 {
        out.push(0, 1);
        return;
    }
    let zigzag = ((change << 1) ^ (change >> 63)) as u64;
    for &(prefix, prefix_len, len) in classes {
        if len == 64 || zigzag < 1 << len {
            out.push(prefix, prefix_len);
            out.push(zigzag, len);
            return;
        }
    }
}

fn take_class(bits: &mut Reader, classes: &Classes) -> Result<i64, Damaged> {
    let mut ones = 0;
    while ones < 4 && bits.take(1)? == 1 {
        ones += 1;
    }
    let len = match ones {
        0 => return Ok(0),
        n => classes[n - 1].2,
    };
    let zigzag = bits.take(len)?;
    Ok((zigzag >> 1) as i64 ^ -((zigzag & 1) as i64))
}

/// A bit stream written most significant bit first.
#[derive(Default)]
struct Bits {
    bytes: Vec<u8>,
    /// Bits not yet in `bytes`, in the low `pending` bits.
    word: u64,
    pending: u32,
}

impl Bits {
    /// Appends the low `len` bits of `value`.
    fn push(&mut self, value: u64, len: u32) {
        if len == 0 {
            return;
        }
        if len > 32 {
            self.push(value >> 32, len - 32);
            self.push(value & 0xffff_ffff, 32);
            return;
        }
        let value = value & ((1u64 << len) - 1);
        self.word = (self.word << len) | value;
        self.pending += len;
        while self.pending >= 8 {
            self.pending -= 8;
            self.bytes.push((self.word >> self.pending) as u8);
        }
        self.word &= (1u64 << self.pending) - 1;
    }

    fn finish(mut self) -> Vec<u8> {
        if self.pending > 0 {
            self.bytes.push((self.word << (8 - self.pending)) as u8);
        }
        self.bytes
    }
}

struct Reader<'a> {
    data: &'a [u8],
    /// The next bit's position.
    at: usize,
}

impl Reader<'_> {
    fn take(&mut self, len: u32) -> Result<u64, Damaged> {
        if self.at + len as usize > self.data.len() * 8 {
            return Err(Damaged);
        }
        let (mut value, mut left) = (0u64, len);
        // A byte's worth at a time: blocks are read whole on every range query.
        while left > 0 {
            let used = (self.at % 8) as u32;
            let n = (8 - used).min(left);
            let byte = u64::from(self.data[self.at / 8]);
            value = (value << n) | ((byte >> (8 - used - n)) & ((1 << n) - 1));
            self.at += n as usize;
            left -= n;
        }
        Ok(value)
    }
}

#[cfg(test)]
mod tests {
    use rand::{Rng, SeedableRng, rngs::StdRng};

    use super::*;

    #[test]
    fn blocks_return_exactly_the_samples_packed() {
        let mut rng = StdRng::seed_from_u64(12);
        for round in 0..200 {
            let mut ts: i64 = rng.random_range(-1_000_000_000_000..4_000_000_000_000_000);
            let mut value: f64 = rng.random_range(-1e6..1e6);
            let samples: Vec<Sample> = (0..rng.random_range(0..400))
                .map(|_| {
                    ts += match rng.random_range(0..4) {
                        0 => 1_000_000,
                        1 => 0,
                        2 => rng.random_range(0..5_000),
                        _ => rng.random_range(0..i64::from(u32::MAX) * 4),
                    };
                    value = match rng.random_range(0..5) {
                        0 => value,
                        1 => value + 1.0,
                        2 => rng.random_range(-1e300..1e300),
                        3 => f64::from_bits(rng.random()),
                        _ => round as f64,
                    };
                    (ts, value)
                })
                .collect();
            let decoded = decode(&encode(&samples)).expect("a block just packed unpacks");
            assert_eq!(decoded.len(), samples.len());
            for (a, b) in decoded.iter().zip(&samples) {
                assert_eq!((a.0, a.1.to_bits()), (b.0, b.1.to_bits()));
            }
        }
    }

    #[test]
    fn regular_samples_take_a_few_bits_each() {
        let samples: Vec<Sample> = (0..3600)
            .map(|i| {
                (
                    1_700_000_000_000_000 + i * 1_000_000,
                    40.0 + (i % 7) as f64 * 0.5,
                )
            })
            .collect();
        let packed = encode(&samples);
        assert!(packed.len() < 3600 * 2, "{} bytes", packed.len());
    }

    #[test]
    fn decimal_values_are_packed_as_integers_and_come_back_bit_for_bit() {
        let mut rng = StdRng::seed_from_u64(3);
        let mut level = 50.0f64;
        let samples: Vec<Sample> = (0..3600)
            .map(|i| {
                level = (level + rng.random_range(-2.0..2.0)).clamp(0.0, 100.0);
                // As an agent writes it: one decimal place, read back from text.
                let value: f64 = format!("{level:.1}").parse().unwrap();
                (1_700_000_000_000_000 + i * 1_000_000, value)
            })
            .collect();
        let packed = encode(&samples);
        assert!(packed.len() < 3600 * 5 / 4, "{} bytes", packed.len());
        let decoded = decode(&packed).unwrap();
        assert!(
            decoded
                .iter()
                .zip(&samples)
                .all(|(a, b)| a.0 == b.0 && a.1.to_bits() == b.1.to_bits())
        );
        // Negative zero is no integer's tenth: packed by XOR, kept exactly.
        let signed = [(0, -0.0), (1, 0.5)];
        let decoded = decode(&encode(&signed)).unwrap();
        assert_eq!(decoded[0].1.to_bits(), (-0.0f64).to_bits());
    }

    #[test]
    fn damaged_blocks_are_refused_not_trusted() {
        let samples: Vec<Sample> = (0..100).map(|i| (i * 1000, i as f64 * 1.1)).collect();
        let packed = encode(&samples);
        assert!(decode(&packed[..packed.len() / 2]).is_err());
        assert!(decode(&[0xff, 0xff, 0xff, 0xff]).is_err());
        assert!(decode(&[]).is_err());
    }
}
