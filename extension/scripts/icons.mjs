// The extension's icons, drawn here instead of committed as binaries: a blue rounded square with
// three linked nodes (the mesh), rasterised with anti-aliasing and written as PNG with node:zlib.
import { crc32, deflateSync } from 'node:zlib'

const BG = [47, 111, 235]
const FG = [255, 255, 255]

/** distance from p to the segment a-b */
function segment(px, py, ax, ay, bx, by) {
  const dx = bx - ax
  const dy = by - ay
  const t = Math.max(0, Math.min(1, ((px - ax) * dx + (py - ay) * dy) / (dx * dx + dy * dy)))
  return Math.hypot(px - ax - t * dx, py - ay - t * dy)
}

/** signed distance to a rounded square filling the unit square with radius r */
function roundedSquare(x, y, r) {
  const qx = Math.abs(x - 0.5) - (0.5 - r)
  const qy = Math.abs(y - 0.5) - (0.5 - r)
  return Math.hypot(Math.max(qx, 0), Math.max(qy, 0)) + Math.min(Math.max(qx, qy), 0) - r
}

const NODES = [
  [0.3, 0.32],
  [0.72, 0.4],
  [0.42, 0.74],
]

/** coverage of background and foreground at a point in unit coordinates */
function shade(x, y, px) {
  const bg = Math.min(1, Math.max(0, 0.5 - roundedSquare(x, y, 0.22) / px))
  let d = Infinity
  for (let i = 0; i < NODES.length; i++) {
    const [ax, ay] = NODES[i]
    const [bx, by] = NODES[(i + 1) % NODES.length]
    d = Math.min(d, segment(x, y, ax, ay, bx, by) - 0.035)
  }
  for (const [nx, ny] of NODES) d = Math.min(d, Math.hypot(x - nx, y - ny) - 0.11)
  const fg = Math.min(1, Math.max(0, 0.5 - d / px))
  return { bg, fg }
}

function png(size, rgba) {
  const chunk = (type, data) => {
    const len = Buffer.alloc(4)
    len.writeUInt32BE(data.length)
    const td = Buffer.concat([Buffer.from(type, 'ascii'), data])
    const crc = Buffer.alloc(4)
    crc.writeUInt32BE(crc32(td) >>> 0)
    return Buffer.concat([len, td, crc])
  }
  const ihdr = Buffer.alloc(13)
  ihdr.writeUInt32BE(size, 0)
  ihdr.writeUInt32BE(size, 4)
  ihdr[8] = 8 // bit depth
  ihdr[9] = 6 // RGBA
  const raw = Buffer.alloc(size * (size * 4 + 1))
  for (let y = 0; y < size; y++) rgba.copy(raw, y * (size * 4 + 1) + 1, y * size * 4, (y + 1) * size * 4)
  return Buffer.concat([
    Buffer.from([137, 80, 78, 71, 13, 10, 26, 10]),
    chunk('IHDR', ihdr),
    chunk('IDAT', deflateSync(raw, { level: 9 })),
    chunk('IEND', Buffer.alloc(0)),
  ])
}

/** One icon as PNG bytes. */
export function icon(size) {
  const rgba = Buffer.alloc(size * size * 4)
  const px = 1 / size
  for (let y = 0; y < size; y++) {
    for (let x = 0; x < size; x++) {
      const { bg, fg } = shade((x + 0.5) / size, (y + 0.5) / size, px)
      const a = bg
      const i = (y * size + x) * 4
      for (let c = 0; c < 3; c++) rgba[i + c] = Math.round(BG[c] * (1 - fg) + FG[c] * fg)
      rgba[i + 3] = Math.round(a * 255)
    }
  }
  return png(size, rgba)
}

export const ICON_SIZES = [16, 32, 48, 128]
