import type { Config } from '../core/config';

/**
 * The categories each policy group blocks, in check order, as the gateway asks per request. One
 * object, made by the composition root (server/start.ts) next to the list store it falls back on,
 * written by list sync (admin-api/list-sync.ts) whenever the console's settings change, and read
 * by the filter: nothing else holds a copy.
 *
 * Precedence: the console's setting (policy_groups), else the config file's, else the configured
 * default categories, else every black category of the loaded lists.
 */
export class PolicyGroups {
  private fromConsole: ReadonlyMap<string, string[]> = new Map();

  constructor(
    private readonly config: Pick<Config, 'defaultGroup' | 'policyGroups' | 'categories'>,
    private readonly lists: { blackCategories(): string[] },
  ) {}

  /** Replaces the console's settings whole (list sync reads them from policy_groups). */
  setFromConsole(groups: ReadonlyMap<string, string[]>): void {
    this.fromConsole = groups;
  }

  /** Synchronous and allocation-free: the gateway calls it per request (callers must not mutate the answer). */
  categoriesFor(group: string | null | undefined): string[] {
    const name = group || this.config.defaultGroup;
    return (
      this.fromConsole.get(name) ??
      this.config.policyGroups[name]?.categories ??
      this.config.categories ??
      this.lists.blackCategories()
    );
  }
}
