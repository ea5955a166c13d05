import { loadConfig, type CliValues } from '../core/config';
import { SchoolgateError } from '../core/errors';
import { caCertPath, caDer, ensureCa, initCa, caKeyPath, parseCaKeyType } from './ca';

const usage = 'usage: schoolgate ca init [--force] [--key-type ec|rsa] | schoolgate ca export [--der]  (both take --data-dir DIR)';

/** `schoolgate ca init|export`: the certificate every school device must trust. */
export async function caCommand(args: string[], values: CliValues): Promise<number> {
  const config = loadConfig(values);
  const [sub] = args;
  if (sub === 'init') {
    const ca = initCa(config.dataDir, { force: values.force, keyType: parseCaKeyType(values['key-type']) });
    process.stdout.write(`School CA created (${ca.keyType === 'ec' ? 'ECDSA P-256' : 'RSA 2048'}, valid 10 years).\n  certificate: ${caCertPath(config.dataDir)}\n  key:         ${caKeyPath(config.dataDir)} (mode 0600: keep it secret)\n`);
    process.stdout.write(`Deploy the certificate to every device: "schoolgate ca export" prints it.\n`);
    return 0;
  }
  if (sub === 'export') {
    // Export on a fresh data folder makes the CA `start` would make, so the two always agree.
    const { ca, created } = ensureCa(config.dataDir);
    if (created) process.stderr.write(`schoolgate: no CA in ${config.dataDir} yet; created one\n`);
    if (values.der) process.stdout.write(caDer(ca));
    else process.stdout.write(ca.certPem);
    return 0;
  }
  throw new SchoolgateError('SG_ERR_USAGE', usage);
}
