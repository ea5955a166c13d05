import { inject } from 'vitest';
import { usePgliteTemplateForTests } from '../../db/db';
import './pglite-template-global';

// Every embedded database a test opens in this worker starts from the run's template cluster.
usePgliteTemplateForTests(inject('pgliteTemplate'));
