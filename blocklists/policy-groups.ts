import type { Config } from '../core/config';
import { silentLogger, type Logger } from '../core/log';
import type { CategoryInfo } from './types';
import { isProfileGroup, PROFILE_FALLBACK_GROUP, profileCategories, ukSchoolsProfile, type Profile, type ProfileGroup } from './profiles';

/**
 * The categories each policy group blocks, in check order, as the gateway asks per request. One
 * object, made by the composition root (server/start.ts) next to the list store it reads, written
 * by list sync (admin-api/list-sync.ts) whenever the console's settings change, and read by the
 * filter: nothing else holds a copy.
 *
 * Precedence, per group: the console's setting (policy_groups), else the config file's
 * (policyGroups), else `--categories` / config `categories` for everyone (squidGuard's way), else
 * the shipped UK school profile (blocklists/profiles/uk-schools.json): `pupils`, `staff` and
 * `guests`, any other group name getting the pupils' categories.
 */
export class PolicyGroups {
  private fromConsole: ReadonlyMap<string, string[]> = new Map();
  private shipped: { of: ReadonlyMap<string, CategoryInfo>; groups: Record<ProfileGroup, string[]> } | null = null;
  private readonly reported = new Set<string>();

  constructor(
    private readonly config: Pick<Config, 'defaultGroup' | 'policyGroups' | 'categories'> & Partial<Pick<Config, 'illegalCategories'>>,
    private readonly lists: { readonly current: { readonly categories: ReadonlyMap<string, CategoryInfo> } },
    private readonly logger: Logger = silentLogger,
    readonly profile: Profile = ukSchoolsProfile(),
  ) {}

  /** Replaces the console's settings whole (list sync reads them from policy_groups). */
  setFromConsole(groups: ReadonlyMap<string, string[]>): void {
    this.fromConsole = groups;
  }

  /** Synchronous and allocation-free: the gateway calls it per request (callers must not mutate the answer). */
  categoriesFor(group: string | null | undefined): string[] {
    const name = group || this.config.defaultGroup;
    return this.fromConsole.get(name) ?? this.config.policyGroups[name]?.categories ?? this.config.categories ?? this.profileFor(name);
  }

  /** Where a group's categories come from now, for the console. */
  sourceOf(group: string): 'console' | 'config' | 'categories' | 'profile' {
    if (this.fromConsole.has(group)) return 'console';
    if (this.config.policyGroups[group]) return 'config';
    return this.config.categories ? 'categories' : 'profile';
  }

  /** The shipped profile's categories for a group, worked out once per compiled list set. */
  profileFor(group: string): string[] {
    const loaded = this.lists.current.categories;
    if (this.shipped?.of !== loaded) {
      const { groups, unknown } = profileCategories(this.profile, loaded, this.config.illegalCategories ?? []);
      this.shipped = { of: loaded, groups };
      const fresh = unknown.filter((n) => !this.reported.has(n));
      if (fresh.length && !this.config.categories) {
        for (const n of fresh) this.reported.add(n);
        // Once per name, not per reload: a school that loads its own lists hears about each once.
        this.logger.warn(
          { categories: fresh },
          'categories not in the UK school profile: blocked for pupils and guests where their usage says black; set policyGroups to decide',
        );
      }
    }
    return this.shipped.groups[isProfileGroup(group) ? group : PROFILE_FALLBACK_GROUP];
  }
}
