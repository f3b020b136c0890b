// CLI: `agentmesh runs` lists runs, `agentmesh runs reset ID [--team T]` resets one. A run's
// numbers live in mesh.counters, which only redis shares between processes (memory and fs keep
// them in the proxy's own memory), so on other storage the commands point at the admin API.
import type { PluginCommand } from '../../core/types.ts'
import { RUN_ID } from './run-id.ts'
import { MICRO, type RunStore } from './state.ts'

type Listed = Awaited<ReturnType<RunStore['list']>>[number]

export function runView(r: Listed) {
  return {
    run: r.run,
    team: r.team,
    source: r.source,
    firstSeen: r.firstSeen,
    calls: r.state.calls,
    tokens: r.state.tokens,
    costUsd: r.state.usdMicro / MICRO,
    startedAt: r.state.start ? new Date(r.state.start).toISOString() : undefined,
    tripped: r.trip
      ? { type: r.trip.type, limit: r.trip.limit, at: r.trip.at }
      : r.state.tripped
        ? { type: 'unknown' }
        : undefined,
  }
}

/** reset the run of that id in one team, or in every team that has one; the teams reset */
export async function resetRuns(store: RunStore, run: string, team?: string): Promise<string[]> {
  const teams =
    team !== undefined ? [team] : [...new Set((await store.list()).filter((r) => r.run === run).map((r) => r.team))]
  const done: string[] = []
  for (const t of teams) if (await store.reset(t, run)) done.push(t)
  return done
}

export function breakerCommands(store: () => RunStore): PluginCommand[] {
  return [
    {
      name: 'runs [action] [id]',
      description: 'Agent runs and their budgets: runs (list), runs reset ID [--team T]',
      options: [
        { flags: '--team <team>', description: 'the team whose run to reset (default: every team with that run id)' },
        { flags: '--json', description: 'print JSON' },
      ],
      async run({ mesh, args, options: o, print }) {
        if (mesh.config.storage.driver !== 'redis') {
          print(
            `runs: run counters are kept in the running proxy's memory on ${mesh.config.storage.driver} storage, out of this command's reach (redis storage shares them). Use the admin API:`,
          )
          print('  curl http://HOST:PORT/agentmesh/admin/runs -H "Authorization: Bearer $AGENTMESH_ADMIN_TOKEN"')
          print(
            '  curl -X POST http://HOST:PORT/agentmesh/admin/runs/RUN_ID/reset -H "Authorization: Bearer $AGENTMESH_ADMIN_TOKEN"',
          )
          return 1
        }
        const [action, id] = args
        if (action === undefined || action === 'list') {
          const list = (await store().list()).map(runView)
          if (o.json) print(JSON.stringify(list, null, 2))
          else if (!list.length) print('no runs')
          else
            for (const r of list)
              print(
                `${r.run}  team ${r.team}  ${r.calls} calls  ${r.tokens} tokens  $${r.costUsd.toFixed(6)}${r.tripped ? `  TRIPPED (${r.tripped.type}${'limit' in r.tripped ? `: ${r.tripped.limit}` : ''})` : ''}`,
              )
          return 0
        }
        if (action !== 'reset') {
          print(`runs: unknown action "${String(action).slice(0, 40)}" (expected list or reset)`)
          return 1
        }
        if (!id || !RUN_ID.test(id)) {
          print(
            'runs reset: give the run id (1 to 128 letters, digits or . _ : - characters), as `agentmesh runs` lists it',
          )
          return 1
        }
        const teams = await resetRuns(store(), id, o.team === undefined ? undefined : String(o.team))
        if (!teams.length) {
          print(`runs reset: no run ${id}${o.team ? ` of team ${o.team}` : ''}`)
          return 1
        }
        print(`reset run ${id} (team ${teams.join(', ')}): a fresh budget, the loop that tripped it forgiven`)
        return 0
      },
    },
  ]
}
