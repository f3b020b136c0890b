// A free TCP port on 127.0.0.1: bind port 0, read the number the kernel gave, close. Nothing
// listens on it afterwards, so it serves as a port to start a server on or as one that refuses.
import { createServer } from 'node:net'

export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = createServer()
    srv.once('error', reject)
    srv.listen(0, '127.0.0.1', () => {
      const { port } = srv.address() as { port: number }
      srv.close(() => resolve(port))
    })
  })
}
